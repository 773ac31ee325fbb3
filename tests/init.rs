//! Init duties: exit codes, signal forwarding, signal state handed to the app, reaping, cleanup.

// Tests state what they expect by unwrapping and panicking; the lints against both are for
// meshwait itself, which usually runs as PID 1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const LINE: Duration = Duration::from_secs(5);

fn no_gate() -> Command {
    let mut cmd = meshwait();
    cmd.args(["--mesh", "none"]);
    cmd
}

#[test]
fn every_exit_code_passes_through() {
    for code in 0..=255 {
        let status = no_gate()
            .args(["--", "sh", "-c", &format!("exit {code}")])
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(code));
    }
}

/// The log line that ends an app's run says how it ended, in words.
#[test]
fn the_log_says_how_the_app_ended() {
    for (script, said) in [
        ("exit 3", "app exited with code 3"),
        ("kill -TERM $$", "app was killed by SIGTERM"),
    ] {
        let out = no_gate().args(["--", "sh", "-c", script]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(said), "{script}: {err}");
    }
}

#[test]
fn death_by_signal_is_128_plus_n() {
    let mut signals = vec![
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGABRT,
        libc::SIGKILL,
        libc::SIGUSR1,
        libc::SIGSEGV,
        libc::SIGUSR2,
        libc::SIGPIPE,
        libc::SIGALRM,
        libc::SIGTERM,
    ];
    signals.extend([libc::SIGRTMIN(), libc::SIGRTMIN() + 5, libc::SIGRTMAX()]);
    for signal in signals {
        let status = no_gate()
            .args(["--", "sh", "-c", &format!("kill -{signal} $$")])
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(128 + signal), "signal {signal}");
    }
}

#[test]
fn missing_and_unexecutable_commands() {
    let out = no_gate()
        .args(["--", "no-such-command-xyz"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("command not found: no-such-command-xyz")
    );
    let dir = scratch_dir("noexec");
    let script = dir.join("script.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    let out = no_gate().arg("--").arg(&script).output().unwrap();
    // root may execute anything with an x bit; without one even root gets EACCES.
    assert_eq!(out.status.code(), Some(126));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&script.display().to_string()), "{err}");
    // Said as what it is, not as a directory or a bare "cannot execute".
    assert!(err.contains("permission denied"), "{err}");
    let out = no_gate().arg("--").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(126));
}

/// A file that exists but cannot start names what is missing, not "command not found": the
/// most common first failure of a new image (a script's interpreter, a glibc binary's loader).
#[test]
fn a_missing_interpreter_or_loader_is_named_and_a_directory_is_called_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch_dir("missing-part");
    let start = |path: &std::path::Path| {
        let out = no_gate().arg("--").arg(path).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let executable = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    };
    let script = executable("script", b"#!/no/such/interpreter -x\nexit 0\n");
    let (code, err) = start(&script);
    assert_eq!(code, Some(127), "{err}");
    assert!(err.contains("interpreter /no/such/interpreter"), "{err}");
    assert!(!err.contains("command not found"), "{err}");

    let crlf = executable("crlf", b"#!/bin/sh\r\nexit 0\r\n");
    let (code, err) = start(&crlf);
    assert_eq!(code, Some(127), "{err}");
    assert!(err.contains("carriage return"), "{err}");

    // A dynamically linked binary whose loader is not there: this system's `true`, with the
    // loader's name in PT_INTERP changed (same length, so the ELF stays valid).
    let true_bin = ["/bin/true", "/usr/bin/true"]
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .unwrap();
    if let Some(at) = true_bin.windows(8).position(|w| w == b"ld-linux") {
        let mut patched = true_bin.clone();
        patched[at..at + 8].copy_from_slice(b"ld-nosuc");
        let binary = executable("dynamic", &patched);
        let (code, err) = start(&binary);
        assert_eq!(code, Some(127), "{err}");
        assert!(
            err.contains("loader /") && err.contains("ld-nosuc"),
            "{err}"
        );
    } else {
        eprintln!("skipped the loader case: this system's `true` has no glibc loader");
    }

    let (code, err) = start(&dir);
    assert_eq!(code, Some(126), "{err}");
    assert!(err.contains("is a directory"), "{err}");
}

/// Where meshwait runs: the two ways an init is used.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Place {
    /// Started by a shell or a runtime's own init (`docker run --init`, a pod with
    /// `shareProcessNamespace`): meshwait is not PID 1 and makes itself a child subreaper.
    Subreaper,
    /// PID 1 of a PID namespace of its own (`unshare --pid --fork --mount-proc`), as in a
    /// container: the kernel drops signals PID 1 has no handler for, and orphans come to it.
    Pid1,
}

/// One setting of the init matrix.
#[derive(Clone, Copy, Debug)]
struct Setting {
    place: Place,
    process_group: bool,
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = match self.place {
            Place::Subreaper => "as subreaper",
            Place::Pid1 => "as PID 1",
        };
        let group = if self.process_group {
            " with --process-group"
        } else {
            ""
        };
        write!(f, "[{place}{group}]")
    }
}

/// Every setting this machine can run: with and without `--process-group`, as subreaper and as
/// PID 1. PID 1 needs root and `unshare`; without them those settings are skipped with a
/// message, or fail when `CI` is set.
fn settings(test: &str) -> Vec<Setting> {
    let mut places = vec![Place::Subreaper];
    if root_or_skip(test, &["--pid", "--fork", "--mount-proc"]) {
        places.push(Place::Pid1);
    }
    places
        .into_iter()
        .flat_map(|place| {
            [false, true].map(|process_group| Setting {
                place,
                process_group,
            })
        })
        .collect()
}

impl Setting {
    /// `meshwait --mesh none [--process-group] ARGS...` in this setting.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = match self.place {
            Place::Subreaper => meshwait(),
            Place::Pid1 => {
                let mut cmd = clean("unshare");
                cmd.args(["--pid", "--fork", "--mount-proc", meshwait_binary()]);
                cmd
            }
        };
        cmd.args(["--mesh", "none"]);
        if self.process_group {
            cmd.arg("--process-group");
        }
        cmd.args(args);
        cmd
    }

    /// The pid, in the test's namespace, of the meshwait that `child` is or started.
    fn meshwait_pid(&self, child: &std::process::Child) -> u32 {
        match self.place {
            Place::Subreaper => child.id(),
            Place::Pid1 => pid1_of(child),
        }
    }
}

#[test]
fn exit_codes_and_deaths_by_signal_in_every_setting() {
    // The full range of codes is `every_exit_code_passes_through`; how a status becomes a code
    // does not depend on the setting, so each setting runs a sample, the edges included.
    let codes = [0, 1, 2, 42, 125, 126, 127, 128, 129, 255];
    let signals = [
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGKILL,
        libc::SIGSEGV,
        libc::SIGTERM,
        32,
        33,
        34,
        libc::SIGRTMIN() + 5,
        libc::SIGRTMAX(),
    ];
    for setting in settings("exit_codes_and_deaths_by_signal_in_every_setting") {
        for code in codes {
            let status = setting
                .command(&["--", "sh", "-c", &format!("exit {code}")])
                .status()
                .unwrap();
            assert_eq!(status.code(), Some(code), "{setting} exit {code}");
        }
        for signal in signals {
            let status = setting
                .command(&["--", "sh", "-c", &format!("kill -{signal} $$")])
                .status()
                .unwrap();
            assert_eq!(
                status.code(),
                Some(128 + signal),
                "{setting} death by signal {signal}"
            );
        }
    }
}

/// Starts meshwait in `setting` over the signal recorder and waits until the recorder's handlers
/// are in. Returns the child, its output, and meshwait's pid.
fn recorder_in(
    setting: Setting,
    options: &[&str],
    fork: bool,
) -> (std::process::Child, Lines, u32) {
    let recorder = helper("sigrecorder.py");
    let mut args = options.to_vec();
    args.extend(["--", python(), &recorder]);
    if fork {
        args.push("--fork");
    }
    let mut cmd = setting.command(&args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let lines = Lines::from(&mut child);
    let mut expect = vec!["ready".to_string()];
    if fork {
        expect.push("child ready".into());
    }
    let mut got = Vec::new();
    while got.len() < expect.len() {
        got.push(
            lines
                .next(LINE)
                .unwrap_or_else(|| panic!("{setting}: recorder did not start")),
        );
    }
    got.sort();
    expect.sort();
    assert_eq!(got, expect, "{setting}");
    let pid = setting.meshwait_pid(&child);
    (child, lines, pid)
}

/// Starts meshwait over the signal recorder, as subreaper without options.
fn recorder(options: &[&str], fork: bool) -> (std::process::Child, Lines) {
    let setting = Setting {
        place: Place::Subreaper,
        process_group: false,
    };
    let (child, lines, _) = recorder_in(setting, options, fork);
    (child, lines)
}

/// Closes the recorder's stdin (it then exits 0) and returns meshwait's exit code.
fn finish(mut child: std::process::Child) -> i32 {
    drop(child.stdin.take());
    wait_bounded(&mut child, LINE).code().unwrap_or(-1)
}

/// Every signal an app can catch, except SIGCHLD (never forwarded). The numbers the app's libc
/// keeps (32 and 33 for the glibc the recorder runs on) cannot be caught:
/// `signals_libc_keeps_for_itself_are_forwarded` covers them.
fn catchable() -> Vec<i32> {
    (1..=libc::SIGRTMAX())
        .filter(|&n| n != libc::SIGKILL && n != libc::SIGSTOP && n != libc::SIGCHLD)
        .filter(|&n| n < 32 || n >= libc::SIGRTMIN())
        .collect()
}

#[test]
fn every_catchable_signal_reaches_the_app_including_realtime() {
    for setting in settings("every_catchable_signal_reaches_the_app_including_realtime") {
        let (child, lines, pid) = recorder_in(setting, &[], false);
        for signal in catchable() {
            send(pid, signal);
            assert_eq!(
                lines.next(LINE),
                Some(signal.to_string()),
                "{setting} signal {signal} was not forwarded"
            );
        }
        assert_eq!(finish(child), 0, "{setting}");
    }
}

#[test]
fn signals_libc_keeps_for_itself_are_forwarded() {
    // 32-34 are the numbers glibc (32, 33) and musl (32-34) keep for themselves; to the kernel,
    // and to an app on another libc, they are real-time signals (a glibc app's SIGRTMIN is 34).
    // The app does not catch them, so it dies of each, and meshwait reports 128+N. Not
    // forwarded, they would end meshwait itself (not PID 1) or be dropped (PID 1: the app would
    // live on and meshwait would not exit).
    for setting in settings("signals_libc_keeps_for_itself_are_forwarded") {
        for signal in [32, 33, 34, libc::SIGRTMAX() - 1] {
            let mut child = setting
                .command(&["--", "sh", "-c", "echo ready; exec sleep 10"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let lines = Lines::from(&mut child);
            assert_eq!(lines.next(LINE).as_deref(), Some("ready"), "{setting}");
            send(setting.meshwait_pid(&child), signal);
            let status = wait_or_kill(&mut child, LINE);
            assert_eq!(
                status.map(|s| (s.code(), std::os::unix::process::ExitStatusExt::signal(&s))),
                Some((Some(128 + signal), None)),
                "{setting} signal {signal}: expected exit {} (None: still running, so dropped; \
                 a signal: meshwait itself was killed)",
                128 + signal
            );
        }
    }
}

#[test]
fn sigchld_is_never_forwarded() {
    for setting in settings("sigchld_is_never_forwarded") {
        let (child, lines, pid) = recorder_in(setting, &[], false);
        send(pid, libc::SIGCHLD);
        send(pid, libc::SIGUSR1);
        // Forwarding is in order, so USR1 arriving first proves CHLD was not sent.
        assert_eq!(
            lines.next(LINE),
            Some(libc::SIGUSR1.to_string()),
            "{setting}"
        );
        assert_eq!(
            lines.drain(Duration::from_millis(200)),
            Vec::<String>::new(),
            "{setting}"
        );
        assert_eq!(finish(child), 0, "{setting}");
    }
}

#[test]
fn sigterm_becomes_the_stop_signal() {
    for setting in settings("sigterm_becomes_the_stop_signal") {
        let (child, lines, pid) = recorder_in(setting, &["--stop-signal", "SIGQUIT"], false);
        send(pid, libc::SIGTERM);
        assert_eq!(
            lines.next(LINE),
            Some(libc::SIGQUIT.to_string()),
            "{setting}"
        );
        send(pid, libc::SIGINT);
        assert_eq!(
            lines.next(LINE),
            Some(libc::SIGINT.to_string()),
            "{setting}"
        );
        assert_eq!(finish(child), 0, "{setting}");
    }
}

/// Guards the forward's bookkeeping in --process-group mode: each signal reaches the app once (a
/// real-time signal queues, so a second send would show), the group is not taken for left, and
/// only the stop signal is logged as one.
#[test]
fn a_group_forward_is_delivered_once_and_logged_as_what_it_is() {
    let setting = Setting {
        place: Place::Subreaper,
        process_group: true,
    };
    let (mut child, lines, pid) = recorder_in(setting, &["--stop-signal", "SIGQUIT"], false);
    let rt = libc::SIGRTMIN() + 3;
    send(pid, rt);
    assert_eq!(lines.drain(Duration::from_millis(300)), [rt.to_string()]);
    send(pid, libc::SIGTERM);
    assert_eq!(lines.next(LINE), Some(libc::SIGQUIT.to_string()));
    drop(child.stdin.take());
    assert_eq!(wait_bounded(&mut child, LINE).code(), Some(0));
    let stderr = stderr_of(&mut child);
    assert_eq!(
        stderr.matches("forwarding stop signal").count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("left its process group"), "{stderr}");
}

#[test]
fn process_group_mode_reaches_the_whole_group() {
    // The recorder forks a child into its group: without --process-group only the app gets the
    // signal, with it both do.
    for setting in settings("process_group_mode_reaches_the_whole_group") {
        let (child, lines, pid) = recorder_in(setting, &[], true);
        send(pid, libc::SIGUSR2);
        let mut got: Vec<String> = lines.next(LINE).into_iter().collect();
        got.extend(lines.drain(Duration::from_millis(300)));
        got.sort();
        let mut expect = vec![libc::SIGUSR2.to_string()];
        if setting.process_group {
            expect.push(format!("child {}", libc::SIGUSR2));
        }
        assert_eq!(got, expect, "{setting}");
        assert_eq!(finish(child), 0, "{setting}");
    }
}

fn status_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("SigBlk") || l.starts_with("SigIgn"))
        .map(str::to_string)
        .collect()
}

/// Runs `cat /proc/self/status` directly and under meshwait, both started with the given signal
/// state, and returns their SigBlk/SigIgn lines. The state is set with the raw system calls, as
/// a parent on another libc could: libc's own calls refuse 32-34.
fn signal_state(blocked: &[i32], ignored: &[i32]) -> (Vec<String>, Vec<String>) {
    let run = |mut cmd: Command| {
        let blocked = blocked.iter().fold(0u64, |m, s| m | 1 << (s - 1));
        let ignored = ignored.to_vec();
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec only raw system calls (rt_sigprocmask, rt_sigaction) on
        // values the closure owns, all async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                libc::syscall(
                    libc::SYS_rt_sigprocmask,
                    libc::SIG_SETMASK,
                    &blocked as *const u64,
                    std::ptr::null_mut::<u64>(),
                    8,
                );
                // Every disposition set, so both runs start alike whatever the runner ignores.
                // The kernel's struct sigaction: handler, flags, restorer, mask.
                for s in (1..=64).filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP) {
                    let handler = if ignored.contains(&s) {
                        libc::SIG_IGN
                    } else {
                        libc::SIG_DFL
                    };
                    let action: [usize; 4] = [handler, 0, 0, 0];
                    libc::syscall(
                        libc::SYS_rt_sigaction,
                        s,
                        action.as_ptr(),
                        std::ptr::null_mut::<usize>(),
                        8,
                    );
                }
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        status_lines(&String::from_utf8_lossy(&out.stdout))
    };
    let mut direct = Command::new("cat");
    direct.arg("/proc/self/status");
    let mut wrapped = no_gate();
    wrapped.args(["--", "cat", "/proc/self/status"]);
    (run(direct), run(wrapped))
}

#[test]
fn the_app_gets_the_signal_mask_and_dispositions_meshwait_inherited() {
    // As subreaper only: under `unshare` the state would be unshare's to pass on, and how
    // meshwait hands it on does not depend on being PID 1.
    let (direct, wrapped) = signal_state(&[], &[]);
    assert_eq!(wrapped, direct);
    assert_eq!(wrapped[0], "SigBlk:\t0000000000000000");

    // 32-34 included: libc hides them, the kernel and the app's libc do not.
    let blocked = [libc::SIGUSR2, 32, 33, 34, libc::SIGRTMIN() + 1];
    let ignored = [
        libc::SIGUSR1,
        libc::SIGPIPE,
        libc::SIGHUP,
        libc::SIGCHLD,
        32,
        33,
        34,
    ];
    let (direct, wrapped) = signal_state(&blocked, &ignored);
    assert_eq!(wrapped, direct);
    let mask = |sigs: &[i32]| sigs.iter().fold(0u64, |m, s| m | 1 << (s - 1));
    let field = |line: &str| u64::from_str_radix(line.split('\t').nth(1).unwrap(), 16).unwrap();
    assert_eq!(field(&wrapped[0]), mask(&blocked));
    assert_eq!(field(&wrapped[1]) & mask(&ignored), mask(&ignored));
}

/// Runs the orphan helper in `setting` and checks that meshwait adopted and reaped its orphans.
fn orphans_are_reaped_in(setting: Setting) {
    let child = setting
        .command(&["--", python(), &helper("orphans.py"), "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let adopter = match setting.place {
        Place::Subreaper => child.id(),
        Place::Pid1 => 1,
    };
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{setting} {text} {err}");
    assert!(
        text.starts_with(&format!("adopted-by {adopter}\n")),
        "{setting} orphans not adopted by meshwait: {text}"
    );
    assert!(text.contains("unreaped 0 alive 0"), "{setting} {text}");
}

#[test]
fn orphans_are_reaped_as_subreaper() {
    for setting in settings("orphans_are_reaped_as_subreaper") {
        if setting.place == Place::Subreaper {
            orphans_are_reaped_in(setting);
        }
    }
}

#[test]
fn orphans_are_reaped_as_pid1() {
    for setting in settings("orphans_are_reaped_as_pid1") {
        if setting.place == Place::Pid1 {
            orphans_are_reaped_in(setting);
        }
    }
}

/// Guards the gate's reaping: as PID 1 meshwait adopts orphans before the app exists (a
/// `kubectl exec` whose process leaves children behind), and must reap them while it waits for
/// the proxy, not only once it supervises.
#[test]
fn orphans_are_reaped_during_the_gate_as_pid1() {
    let server = ReadyServer::start("127.0.0.1:0", vec![], Reply::Status(503, "not yet"));
    let mut cmd = clean("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", meshwait_binary()])
        .args(["--mesh", "none", "--ready-url", &server.url(), "--", "true"]);
    let mut child = spawn(cmd);
    assert!(eventually(Duration::from_secs(5), || !server
        .served()
        .is_empty()));
    let pid = pid1_of(&child);
    // Into meshwait's PID and mount namespaces, as `kubectl exec` enters a container.
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-p", "-m", "--"])
        .args([python(), &helper("orphans.py"), "3"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("adopted-by 1\n"), "{text}");
    assert!(text.contains("unreaped 0 alive 0"), "{text}");
    send(pid, libc::SIGTERM);
    assert_eq!(
        wait_bounded(&mut child, Duration::from_secs(5)).code(),
        Some(143)
    );
}

/// The pid (in our namespace) of the meshwait that `unshare` started, once it runs meshwait.
fn pid1_of(unshare: &std::process::Child) -> u32 {
    let children = format!("/proc/{0}/task/{0}/children", unshare.id());
    let mut pid = 0;
    let found = eventually(LINE, || {
        pid = std::fs::read_to_string(&children)
            .ok()
            .and_then(|c| c.split_whitespace().next().and_then(|p| p.parse().ok()))
            .unwrap_or(0);
        pid != 0
            && std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|exe| exe.to_string_lossy().contains("meshwait"))
    });
    assert!(found, "unshare did not start meshwait");
    pid
}

#[test]
fn stop_signal_during_the_gate_as_pid1_exits_143() {
    if !root_or_skip(
        "stop_signal_during_the_gate_as_pid1_exits_143",
        &["--pid", "--fork", "--mount-proc"],
    ) {
        return;
    }
    let mut unshare = clean("unshare")
        .args(["--pid", "--fork", "--mount-proc", meshwait_binary()])
        .args(["--ready-url", "http://127.0.0.1:1/", "--timeout", "0"])
        .args(["--", "true"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid1 = pid1_of(&unshare);
    // Let it reach the gate; a default-disposition PID 1 would drop this signal and hang.
    std::thread::sleep(Duration::from_millis(200));
    send(pid1, libc::SIGTERM);
    assert_eq!(wait_bounded(&mut unshare, LINE).code(), Some(143));
}

#[test]
fn signals_libc_keeps_stay_blocked_after_a_name_lookup_thread_starts() {
    // A readiness host that is not an address is looked up on a thread of its own. The first
    // thread a process creates makes libc unblock its own numbers in the creating thread (glibc
    // 32 and 33, musl 33 and 34), and a new thread starts with libc's cancellation signal
    // unblocked (glibc 32, musl 33); meshwait must block them again, or from then on one of
    // them ends it (the default action). As subreaper: as PID 1 the kernel would drop the
    // signal instead, which looks the same from outside as meshwait noting and dropping it here.
    let mut child = meshwait()
        .args(["--ready-url", "http://meshwait-test.invalid:1/ready"])
        .args(["--request-timeout", "200ms", "--timeout", "0", "--", "true"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tasks = format!("/proc/{}/task", child.id());
    let threads = || std::fs::read_dir(&tasks).map_or(0, Iterator::count);
    assert!(
        eventually(LINE, || threads() > 1),
        "no lookup thread was started"
    );
    // Let the new thread reach its start-up code.
    std::thread::sleep(Duration::from_millis(100));
    for signal in [32, 33, 34] {
        send(child.id(), signal);
    }
    // Still alive: the signals were noted during the gate (no app yet), and a stop signal ends
    // the gate as usual.
    std::thread::sleep(Duration::from_millis(100));
    send(child.id(), libc::SIGTERM);
    let status = wait_bounded(&mut child, LINE);
    assert_eq!(
        (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status)
        ),
        (Some(143), None),
        "{}",
        stderr_of(&mut child)
    );
}

#[test]
fn leftovers_get_sigterm_then_sigkill_after_the_grace() {
    for setting in settings("leftovers_get_sigterm_then_sigkill_after_the_grace") {
        let dir = scratch_dir(&format!(
            "leftovers-{:?}-{}",
            setting.place, setting.process_group
        ));
        let pids = dir.join("pids");
        // One leftover that exits on TERM, one that ignores it, and one in a session of its own
        // (an orphan handed to meshwait outside the app's group, counted apart from the group);
        // the app itself exits 3.
        // The app exits only once the stubborn one has set its trap, or TERM could beat the trap.
        // The mark is made by a redirection, not `touch`: a `touch` still exiting when the app
        // ended was a third leftover under load.
        let script = format!(
            "sleep 60 & echo $! >> {p}; setsid sleep 60 & echo $! >> {p}; (trap '' TERM; : > {r}; exec sleep 60) & echo $! >> {p}; \
             while [ ! -e {r} ]; do sleep 0.01; done; exit 3",
            p = pids.display(),
            r = dir.join("trapped").display()
        );
        let out = setting
            .command(&["--cleanup-grace", "300ms", "--", "sh", "-c", &script])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{setting}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("sending SIGTERM to processes the app left behind count=3"),
            "{setting} {err}"
        );
        assert!(
            err.contains("grace over; sending SIGKILL count=1"),
            "{setting} {err}"
        );
        // As PID 1 the recorded pids are the namespace's, and the namespace ends with meshwait
        // (the kernel kills what is left): the log lines above are the evidence there.
        if setting.place == Place::Subreaper {
            for pid in std::fs::read_to_string(&pids).unwrap().split_whitespace() {
                assert!(
                    !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                    "{setting} leftover {pid} still exists"
                );
            }
        }
    }
}

/// A leftover whose parent is another leftover is not meshwait's child: only the scan of the
/// app's process group finds it. Without that scan it would get no SIGTERM with the rest, and be
/// counted and killed only after the grace, once its parent's death handed it over.
#[test]
fn leftovers_that_are_not_meshwaits_children_are_found_by_their_group() {
    for setting in settings("leftovers_that_are_not_meshwaits_children_are_found_by_their_group") {
        let dir = scratch_dir(&format!(
            "grandchild-{:?}-{}",
            setting.place, setting.process_group
        ));
        let pids = dir.join("pids");
        let script = format!(
            ": > {p}; sh -c 'sleep 60 & echo $! >> {p}; wait' & echo $! >> {p}; \
             while [ $(wc -l < {p}) -lt 2 ]; do sleep 0.01; done; exit 3",
            p = pids.display()
        );
        let out = setting
            .command(&["--cleanup-grace", "5s", "--", "sh", "-c", &script])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{setting}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("sending SIGTERM to processes the app left behind count=2"),
            "{setting} {err}"
        );
        assert!(!err.contains("grace over"), "{setting} {err}");
    }
}

#[test]
fn no_grace_wait_when_nothing_is_left() {
    for setting in settings("no_grace_wait_when_nothing_is_left") {
        // A behaviour bound, not a speed target: with nothing left, the 30 s grace must not be
        // used.
        let started = std::time::Instant::now();
        let out = setting
            .command(&["--cleanup-grace", "30s", "--", "true"])
            .output()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(10), "{setting}");
        assert_eq!(out.status.code(), Some(0), "{setting}");
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("left behind"),
            "{setting}"
        );
    }
}

#[test]
fn stdin_and_stdout_are_the_apps() {
    for setting in settings("stdin_and_stdout_are_the_apps") {
        let mut child = setting
            .command(&["--", "tr", "a-z", "A-Z"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"hello mesh\n")
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "HELLO MESH\n",
            "{setting}"
        );
    }
}

/// Runs `cmd` with `signal` ignored, as `nohup` or a careless parent would leave it.
fn ignoring(mut cmd: Command, signal: i32) -> Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only signal(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(signal, libc::SIG_IGN);
            Ok(())
        });
    }
    cmd
}

#[test]
fn an_inherited_ignored_sigchld_does_not_lose_the_exit_code() {
    // With SIGCHLD ignored the kernel discards children's statuses; meshwait must undo that for
    // itself (the app still inherits "ignored": see the signal-state test).
    let mut cmd = no_gate();
    cmd.args(["--", "sh", "-c", "sleep 0.1; exit 7"]);
    let mut child = ignoring(cmd, libc::SIGCHLD).spawn().unwrap();
    assert_eq!(wait_bounded(&mut child, LINE).code(), Some(7));
}

#[test]
fn a_closed_stderr_neither_kills_meshwait_nor_reaches_the_app_as_sigpipe() {
    let (mut child, lines) = recorder(&["-vv"], false);
    drop(child.stderr.take());
    // Each forward now logs into a closed pipe: EPIPE and a SIGPIPE meshwait caused itself.
    for _ in 0..3 {
        send(child.id(), libc::SIGUSR1);
        assert_eq!(lines.next(LINE), Some(libc::SIGUSR1.to_string()));
    }
    assert_eq!(
        lines.drain(Duration::from_millis(200)),
        Vec::<String>::new()
    );
    drop(child.stdin.take());
    assert_eq!(wait_bounded(&mut child, LINE).code(), Some(0));
}

#[test]
fn closed_standard_descriptors_are_survived() {
    // With fd 2 closed, meshwait's next descriptor would become fd 2 and take its log lines;
    // it must point fd 2 at /dev/null first, which the app then inherits.
    use std::os::unix::process::CommandExt;
    let mut cmd = no_gate();
    cmd.args(["-v", "--", "sh", "-c", "readlink /proc/self/fd/2; exit 5"]);
    // SAFETY: between fork and exec only close(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::close(0);
            libc::close(2);
            Ok(())
        });
    }
    let out = cmd.stdout(Stdio::piped()).output().unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/dev/null\n");
}

/// Guards --process-group forwarding when the app has left its own group (setpgid into another):
/// the group kill fails with ESRCH while the app is alive, and the signal must still reach it.
#[test]
fn a_signal_reaches_an_app_that_left_its_process_group() {
    let app = r#"
import os, signal, sys, time
child = os.fork()
if child == 0:
    time.sleep(30)
    os._exit(0)
os.setpgid(child, child)
os.setpgid(0, child)
got = []
signal.signal(signal.SIGUSR1, lambda *_: got.append(1))
print("moved", flush=True)
deadline = time.time() + 5
while not got and time.time() < deadline:
    time.sleep(0.01)
os.kill(child, signal.SIGKILL)
os.waitpid(child, 0)
print("got USR1" if got else "no USR1", flush=True)
"#;
    let mut cmd = no_gate();
    cmd.args(["--process-group", "--", python(), "-c", app])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let lines = Lines::from(&mut child);
    assert_eq!(lines.next(LINE).as_deref(), Some("moved"));
    send(child.id(), libc::SIGUSR1);
    assert_eq!(
        lines.next(Duration::from_secs(8)).as_deref(),
        Some("got USR1")
    );
    assert_eq!(wait_bounded(&mut child, LINE).code(), Some(0));
    let stderr = stderr_of(&mut child);
    assert!(stderr.contains("left its process group"), "{stderr}");
}

/// Guards the reaper's loop: orphans that exit in the same instant send one merged SIGCHLD, and
/// every one of them must still be reaped (a reaper that took one zombie per SIGCHLD left 2 to 5
/// of 8), in every setting.
#[test]
fn orphans_exiting_together_are_all_reaped() {
    for setting in settings("orphans_exiting_together_are_all_reaped") {
        let out = setting
            .command(&["--", python(), &helper("orphan_burst.py"), "8"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{setting}: {text}");
        assert_eq!(text.trim(), "zombies 0", "{setting}");
    }
}

/// Stopped and continued from outside (a debugger, `kill -STOP`, a frozen cgroup), meshwait's
/// wait for the next signal returns EINTR: that is "look again", not a failure of supervision.
#[test]
fn a_stopped_and_continued_meshwait_carries_on() {
    let mut cmd = no_gate();
    cmd.args(["--", "sh", "-c", "sleep 1; exit 4"])
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    send(child.id(), libc::SIGSTOP);
    std::thread::sleep(Duration::from_millis(100));
    send(child.id(), libc::SIGCONT);
    let status = wait_bounded(&mut child, Duration::from_secs(10));
    let stderr = stderr_of(&mut child);
    assert_eq!(status.code(), Some(4), "{stderr}");
    assert!(!stderr.contains("failed"), "{stderr}");
}

/// While the app runs and nothing happens, meshwait sleeps in the kernel: no timer, no polling
/// loop (a zero timeout on that wait would spin a core for the app's whole life). The bound is
/// a quarter of the time watched, far above what an idle meshwait uses (none) and far below a
/// spinning one (all of it), so a loaded machine cannot tip it either way.
#[test]
fn an_idle_meshwait_uses_no_cpu() {
    let mut cmd = no_gate();
    cmd.args(["--", "sleep", "3"]).stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(child.id());
    std::thread::sleep(Duration::from_millis(2000));
    let used = cpu_ticks(child.id()) - before;
    let _ = child.kill();
    let _ = child.wait();
    let per_second = ticks_per_second();
    assert!(
        used * 4 < 2 * per_second,
        "meshwait used {used} ticks of CPU ({per_second} a second) in 2 s of waiting"
    );
}

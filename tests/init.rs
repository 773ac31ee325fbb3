//! Init duties: exit codes, signal forwarding, signal state handed to the app, reaping, cleanup.

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
    assert!(String::from_utf8_lossy(&out.stderr).contains(&script.display().to_string()));
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

/// Starts meshwait over the signal recorder and waits until the recorder's handlers are in.
fn recorder(options: &[&str], fork: bool) -> (std::process::Child, Lines) {
    let mut cmd = no_gate();
    cmd.args(options)
        .args(["--", python(), &helper("sigrecorder.py")]);
    if fork {
        cmd.arg("--fork");
    }
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
        got.push(lines.next(LINE).expect("recorder did not start"));
    }
    got.sort();
    expect.sort();
    assert_eq!(got, expect);
    (child, lines)
}

fn finish(mut child: std::process::Child) -> i32 {
    drop(child.stdin.take());
    wait_bounded(&mut child, LINE).code().unwrap_or(-1)
}

/// Every signal an app can catch, except SIGCHLD (never forwarded) and the numbers libc keeps.
fn catchable() -> Vec<i32> {
    (1..=libc::SIGRTMAX())
        .filter(|&n| n != libc::SIGKILL && n != libc::SIGSTOP && n != libc::SIGCHLD)
        .filter(|&n| n < 32 || n >= libc::SIGRTMIN())
        .collect()
}

#[test]
fn every_catchable_signal_reaches_the_app_including_realtime() {
    let (child, lines) = recorder(&[], false);
    let pid = child.id();
    for signal in catchable() {
        send(pid, signal);
        assert_eq!(
            lines.next(LINE),
            Some(signal.to_string()),
            "signal {signal} was not forwarded"
        );
    }
    assert_eq!(finish(child), 0);
}

#[test]
fn sigchld_is_never_forwarded() {
    let (child, lines) = recorder(&[], false);
    send(child.id(), libc::SIGCHLD);
    send(child.id(), libc::SIGUSR1);
    // Forwarding is in order, so USR1 arriving first proves CHLD was not sent.
    assert_eq!(lines.next(LINE), Some(libc::SIGUSR1.to_string()));
    assert_eq!(
        lines.drain(Duration::from_millis(200)),
        Vec::<String>::new()
    );
    assert_eq!(finish(child), 0);
}

#[test]
fn sigterm_becomes_the_stop_signal() {
    let (child, lines) = recorder(&["--stop-signal", "SIGQUIT"], false);
    send(child.id(), libc::SIGTERM);
    assert_eq!(lines.next(LINE), Some(libc::SIGQUIT.to_string()));
    send(child.id(), libc::SIGINT);
    assert_eq!(lines.next(LINE), Some(libc::SIGINT.to_string()));
    assert_eq!(finish(child), 0);
}

#[test]
fn process_group_mode_reaches_the_whole_group() {
    let (child, lines) = recorder(&[], true);
    send(child.id(), libc::SIGUSR2);
    assert_eq!(
        lines.drain(Duration::from_millis(300)),
        [libc::SIGUSR2.to_string()]
    );
    assert_eq!(finish(child), 0);

    let (child, lines) = recorder(&["--process-group"], true);
    send(child.id(), libc::SIGUSR2);
    let mut got: Vec<String> = (0..2).filter_map(|_| lines.next(LINE)).collect();
    got.extend(lines.drain(Duration::from_millis(200)));
    got.sort();
    assert_eq!(
        got,
        [
            libc::SIGUSR2.to_string(),
            format!("child {}", libc::SIGUSR2)
        ]
    );
    assert_eq!(finish(child), 0);
}

fn status_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("SigBlk") || l.starts_with("SigIgn"))
        .map(str::to_string)
        .collect()
}

/// Runs `cat /proc/self/status` directly and under meshwait, both started with the given signal
/// state, and returns their SigBlk/SigIgn lines.
fn signal_state(blocked: &[i32], ignored: &[i32]) -> (Vec<String>, Vec<String>) {
    let run = |mut cmd: Command| {
        let (blocked, ignored) = (blocked.to_vec(), ignored.to_vec());
        use std::os::unix::process::CommandExt;
        unsafe {
            cmd.pre_exec(move || {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                for &s in &blocked {
                    libc::sigaddset(&mut set, s);
                }
                libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                for &s in &ignored {
                    libc::signal(s, libc::SIG_IGN);
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
    let (direct, wrapped) = signal_state(&[], &[]);
    assert_eq!(wrapped, direct);
    assert_eq!(wrapped[0], "SigBlk:\t0000000000000000");

    let blocked = [libc::SIGUSR2, libc::SIGRTMIN() + 1];
    let ignored = [libc::SIGUSR1, libc::SIGPIPE, libc::SIGHUP, libc::SIGCHLD];
    let (direct, wrapped) = signal_state(&blocked, &ignored);
    assert_eq!(wrapped, direct);
    let mask = |sigs: &[i32]| sigs.iter().fold(0u64, |m, s| m | 1 << (s - 1));
    let field = |line: &str| u64::from_str_radix(line.split('\t').nth(1).unwrap(), 16).unwrap();
    assert_eq!(field(&wrapped[0]), mask(&blocked));
    assert_eq!(field(&wrapped[1]) & mask(&ignored), mask(&ignored));
}

#[test]
fn orphans_are_reaped_as_subreaper() {
    let child = no_gate()
        .args(["--", python(), &helper("orphans.py"), "3"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let meshwait_pid = child.id();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.starts_with(&format!("adopted-by {meshwait_pid}\n")),
        "orphans not adopted by meshwait: {text}"
    );
    assert!(text.contains("unreaped 0 alive 0"), "{text}");
}

/// `unshare` running meshwait, with `args`, as PID 1 of a new PID namespace (with its own /proc);
/// `None` when that is not possible here.
fn as_pid1(args: &[&str]) -> Option<Command> {
    if !is_root() {
        eprintln!("skipped: PID namespaces need root");
        return None;
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", MESHWAIT])
        .args(args);
    Some(cmd)
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
fn orphans_are_reaped_as_pid1() {
    let Some(mut cmd) = as_pid1(&["--mesh", "none", "--", python(), &helper("orphans.py"), "3"])
    else {
        return;
    };
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("adopted-by 1\n"), "{text}");
    assert!(text.contains("unreaped 0 alive 0"), "{text}");
}

#[test]
fn as_pid1_signals_are_not_dropped() {
    let recorder = helper("sigrecorder.py");
    let Some(mut cmd) = as_pid1(&["--mesh", "none", "--", python(), &recorder]) else {
        return;
    };
    let mut unshare = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::from(&mut unshare);
    assert_eq!(lines.next(LINE).as_deref(), Some("ready"));
    let pid1 = pid1_of(&unshare);
    for signal in [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGUSR1,
        libc::SIGRTMIN() + 2,
    ] {
        send(pid1, signal);
        assert_eq!(lines.next(LINE), Some(signal.to_string()));
    }
    drop(unshare.stdin.take());
    assert_eq!(wait_bounded(&mut unshare, LINE).code(), Some(0));
}

#[test]
fn stop_signal_during_the_gate_as_pid1_exits_143() {
    let gate = [
        "--ready-url",
        "http://127.0.0.1:1/",
        "--timeout",
        "0",
        "--",
        "true",
    ];
    let Some(mut cmd) = as_pid1(&gate) else {
        return;
    };
    let mut unshare = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let pid1 = pid1_of(&unshare);
    // Let it reach the gate; a default-disposition PID 1 would drop this signal and hang.
    std::thread::sleep(Duration::from_millis(200));
    send(pid1, libc::SIGTERM);
    assert_eq!(wait_bounded(&mut unshare, LINE).code(), Some(143));
}

#[test]
fn leftovers_get_sigterm_then_sigkill_after_the_grace() {
    let dir = scratch_dir("leftovers");
    let pids = dir.join("pids");
    // One leftover that exits on TERM, one that ignores it; the app itself exits 3.
    // The app exits only once the stubborn one has set its trap, or TERM could beat the trap.
    let script = format!(
        "sleep 60 & echo $! >> {p}; (trap '' TERM; touch {r}; exec sleep 60) & echo $! >> {p}; \
         while [ ! -e {r} ]; do sleep 0.01; done; exit 3",
        p = pids.display(),
        r = dir.join("trapped").display()
    );
    let out = no_gate()
        .args(["--cleanup-grace", "300ms", "--", "sh", "-c", &script])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sending SIGTERM to processes the app left behind count=2"),
        "{err}"
    );
    assert!(err.contains("grace over; sending SIGKILL count=1"), "{err}");
    for pid in std::fs::read_to_string(&pids).unwrap().split_whitespace() {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "leftover {pid} still exists"
        );
    }
}

#[test]
fn no_grace_wait_when_nothing_is_left() {
    // A behaviour bound, not a speed target: with nothing left, the 30 s grace must not be used.
    let started = std::time::Instant::now();
    let out = no_gate()
        .args(["--cleanup-grace", "30s", "--", "true"])
        .output()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("left behind"));
}

#[test]
fn stdin_and_stdout_are_the_apps() {
    let mut child = no_gate()
        .args(["--", "tr", "a-z", "A-Z"])
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
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELLO MESH\n");
}

/// Runs `cmd` with `signal` ignored, as `nohup` or a careless parent would leave it.
fn ignoring(mut cmd: Command, signal: i32) -> Command {
    use std::os::unix::process::CommandExt;
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
/// every one of them must still be reaped (a reaper that took one zombie per SIGCHLD left 2 to 7
/// of 8), as a subreaper and as PID 1.
#[test]
fn orphans_exiting_together_are_all_reaped() {
    let args = [
        "--mesh",
        "none",
        "--",
        python(),
        &helper("orphan_burst.py"),
        "8",
    ];
    let mut settings = vec![(
        "subreaper",
        Some({
            let mut cmd = meshwait();
            cmd.args(args);
            cmd
        }),
    )];
    settings.push(("PID 1", as_pid1(&args)));
    for (setting, cmd) in settings {
        let Some(mut cmd) = cmd else { continue };
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{setting}: {text}");
        assert_eq!(text.trim(), "zombies 0", "{setting}");
    }
}

//! Interactive use: the app gets the terminal; a job-control shell sees meshwait stop with its
//! app, and `fg` resumes both with the terminal back in the app's hands. Each case runs with and
//! without `--process-group`, with meshwait as a shell's job (not PID 1), and as PID 1 of a PID
//! namespace with the terminal owned inside it (`docker run -it`) and outside it (`unshare
//! --pid` run from a shell).

// Tests state what they expect by unwrapping and panicking; the lints against both are for
// meshwait itself, which usually runs as PID 1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// Who owns the terminal and where meshwait runs (see `helpers/jobcontrol.py`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Where {
    /// An interactive bash runs meshwait as a job; meshwait is not PID 1.
    Shell,
    /// meshwait is PID 1 and the terminal's session leader inside its namespace.
    Pid1Inside,
    /// An interactive bash runs `unshare --pid ... meshwait`: meshwait is PID 1, and the
    /// terminal's session and foreground group lie outside its namespace.
    Pid1Outside,
    /// An interactive bash runs `setsid -w meshwait`: meshwait leads a session of its own, apart
    /// from its parent's, with the terminal on stdin but not as its controlling terminal.
    Setsid,
    /// tini is PID 1 and the terminal's session leader, and meshwait leads the foreground group
    /// (`docker run -it --init`): meshwait's parent is an init that resumes nothing.
    InitInside,
}

#[derive(Clone, Copy, Debug)]
struct Setting {
    place: Where,
    process_group: bool,
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = match self.place {
            Where::Shell => "a shell's job",
            Where::Pid1Inside => "PID 1, terminal inside its namespace",
            Where::Pid1Outside => "PID 1, terminal outside its namespace",
            Where::InitInside => "under tini as PID 1",
            Where::Setsid => "a session of its own",
        };
        let group = if self.process_group {
            " with --process-group"
        } else {
            ""
        };
        write!(f, "[{place}{group}]")
    }
}

impl Setting {
    fn is_pid1(&self) -> bool {
        matches!(self.place, Where::Pid1Inside | Where::Pid1Outside)
    }
}

/// The settings among `places` this machine can run: the PID 1 ones need root and `unshare`
/// (skipped with a message, or failing when `CI` is set), all of them bash.
fn settings(test: &str, places: &[Where]) -> Vec<Setting> {
    if Command::new("bash").arg("-c").arg("true").status().is_err() {
        eprintln!("skipped {test}: no bash");
        return Vec::new();
    }
    let pid1 = places.iter().any(|p| *p != Where::Shell)
        && root_or_skip(test, &["--pid", "--fork", "--mount-proc"]);
    let tini = places.contains(&Where::InitInside)
        && pid1
        && (Command::new("tini").arg("--version").output().is_ok() || {
            assert!(std::env::var_os("CI").is_none(), "{test}: tini is missing");
            eprintln!("skipped part of {test}: no tini");
            false
        });
    places
        .iter()
        .filter(|p| match p {
            Where::Shell | Where::Setsid => true,
            Where::InitInside => tini,
            _ => pid1,
        })
        .flat_map(|&place| {
            [false, true].map(|process_group| Setting {
                place,
                process_group,
            })
        })
        .collect()
}

/// What one session showed (see `helpers/jobcontrol.py`).
#[derive(Debug)]
struct Session {
    /// bash reported the job stopped.
    stopped: bool,
    /// meshwait's exit status as the session saw it.
    exit: String,
    /// The app's own report: `app: conts=N` (SIGCONTs delivered to it).
    output: String,
    /// meshwait's warnings about a terminal it could not give the app.
    warnings: usize,
    /// meshwait's error log lines.
    errors: usize,
    /// How often the app (with `--survive-hup`) said it was hung up.
    hangups: usize,
    lines: Vec<String>,
}

impl Session {
    /// A field of the app's own report, `app: conts=N hangups=M [child=STATE]`.
    fn reported(&self, key: &str) -> Option<&str> {
        let report = self.output.strip_prefix("app: ")?;
        report
            .split_whitespace()
            .find_map(|field| field.strip_prefix(key)?.strip_prefix('='))
    }

    /// SIGCONTs delivered to the app; `None` when it never reported (never read EOF).
    fn conts(&self) -> Option<usize> {
        self.reported("conts")?.parse().ok()
    }

    /// A line the helper printed for this mode, such as `script-read yes`.
    fn line(&self, key: &str) -> Option<&str> {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
    }
}

/// Drives one session through the helper.
fn session(setting: Setting, mode: &str, app_args: &[&str]) -> Session {
    let place = match setting.place {
        Where::Shell => "shell",
        Where::Pid1Inside => "pid1-inside",
        Where::Pid1Outside => "pid1-outside",
        Where::InitInside => "init-inside",
        Where::Setsid => "setsid",
    };
    let mut cmd = clean(python());
    cmd.args([&helper("jobcontrol.py"), meshwait_binary(), place, mode]);
    if setting.process_group {
        cmd.arg("--process-group");
    }
    cmd.args(["--", python(), &helper("countcont.py")])
        .args(app_args);
    let out = cmd.output().unwrap();
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let field = |key: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    Session {
        stopped: field("stopped ") == "yes",
        exit: field("exit "),
        output: field("output "),
        warnings: field("warnings ").parse().unwrap_or(usize::MAX),
        errors: field("errors ").parse().unwrap_or(usize::MAX),
        hangups: field("hangups ").parse().unwrap_or(usize::MAX),
        lines,
    }
}

/// The app read "ping" and EOF from the terminal (so the terminal was its group's) and meshwait
/// exited 0 with it, having given no warning.
fn assert_read_its_input(setting: Setting, got: &Session) {
    assert_eq!(got.exit, "0", "{setting} {got:?}");
    assert!(
        got.conts().is_some(),
        "{setting} the app never read EOF: {got:?}"
    );
    assert_eq!(got.warnings, 0, "{setting} {got:?}");
    assert_eq!(got.errors, 0, "{setting} {got:?}");
}

#[test]
fn the_app_gets_the_terminal_and_its_input() {
    // Under `unshare --pid` from a shell, tcgetpgrp and getpgrp both read 0 inside the
    // namespace; meshwait must still see that its group is the foreground and hand the terminal
    // over, or the app stops reading it (SIGTTIN) and, as PID 1 used to, meshwait resumes it
    // into the same stop for ever.
    let places = [Where::Shell, Where::Pid1Inside, Where::Pid1Outside];
    for setting in settings("the_app_gets_the_terminal_and_its_input", &places) {
        let got = session(setting, "read", &[]);
        assert!(!got.stopped, "{setting} {got:?}");
        assert_read_its_input(setting, &got);
        assert_eq!(got.conts(), Some(0), "{setting} {got:?}");
    }
}

#[test]
fn ctrl_z_stops_the_job_and_fg_resumes_it() {
    let places = [
        Where::Shell,
        Where::Pid1Inside,
        Where::Pid1Outside,
        Where::InitInside,
    ];
    for setting in settings("ctrl_z_stops_the_job_and_fg_resumes_it", &places) {
        // The child stops with the app (Ctrl-Z stops the whole foreground group) and must be
        // resumed with it: meshwait continues the app's group, not only the app.
        let got = session(setting, "ctrl-z", &["--with-child"]);
        // As PID 1 the kernel ignores the SIGSTOP meshwait would send itself, so it cannot stop
        // with the app: it resumes the app at once, and Ctrl-Z does nothing, as it does to an
        // app that is PID 1 itself. Under tini no shell is left to resume a stopped meshwait
        // either (tini resumes nothing), so Ctrl-Z does nothing there too, and the app is not
        // hung up for it. The shell sees no stop.
        assert_eq!(
            got.stopped,
            setting.place == Where::Shell,
            "{setting} {got:?}"
        );
        assert_read_its_input(setting, &got);
        // One stop, one SIGCONT: the shell's `fg` (not also a second one forwarded by meshwait),
        // or meshwait's own as PID 1.
        assert_eq!(got.conts(), Some(1), "{setting} {got:?}");
        assert_eq!(got.reported("hangups"), Some("0"), "{setting} {got:?}");
        assert_eq!(got.reported("child"), Some("running"), "{setting} {got:?}");
    }
}

/// A background job stops when its app uses the terminal (`stop` is the app's option that
/// does) and `fg` resumes it with the terminal in the app's hands.
fn background_job_stops_and_fg_resumes_it(test: &str, app_args: &[&str]) {
    // With the terminal inside meshwait's namespace meshwait is the session leader, with no
    // shell to start it in the background: that case does not arise.
    let places = [Where::Shell, Where::Pid1Outside];
    for setting in settings(test, &places) {
        let got = session(setting, "background", app_args);
        assert_eq!(got.exit, "0", "{setting} {got:?}");
        assert!(
            got.conts().is_some(),
            "{setting} the app never read EOF: {got:?}"
        );
        assert_eq!(got.errors, 0, "{setting} {got:?}");
        if setting.is_pid1() {
            // meshwait cannot stop, and cannot give the app a terminal whose foreground is
            // another group: the app stays stopped (one warning says why) instead of being
            // continued into the same stop over and over (the helper waits 1.5 s before `fg`),
            // and after `fg` meshwait hands it the terminal. One SIGCONT: meshwait's, once it
            // could hand the terminal over (the shell's `fg` sends none to a job that never
            // stopped).
            assert!(!got.stopped, "{setting} {got:?}");
            assert_eq!(got.warnings, 1, "{setting} {got:?}");
            assert_eq!(got.conts(), Some(1), "{setting} {got:?}");
        } else {
            assert!(got.stopped, "{setting} {got:?}");
            assert_eq!(got.warnings, 0, "{setting} {got:?}");
            assert_eq!(got.conts(), Some(1), "{setting} {got:?}");
        }
    }
}

#[test]
fn bg_after_ctrl_z_leaves_the_terminal_with_the_shell() {
    // After `bg` the shell keeps the terminal, so meshwait, resumed in the background, must not
    // hand it to the app: the app's read then stops the job again, and `fg` ends that.
    for setting in settings(
        "bg_after_ctrl_z_leaves_the_terminal_with_the_shell",
        &[Where::Shell],
    ) {
        let got = session(setting, "ctrl-z-bg", &[]);
        assert_eq!(got.line("foreground"), Some("shell"), "{setting} {got:?}");
        assert_eq!(got.line("stops"), Some("2"), "{setting} {got:?}");
        assert_read_its_input(setting, &got);
        // One SIGCONT for `bg`, one for `fg`.
        assert_eq!(got.conts(), Some(2), "{setting} {got:?}");
    }
}

#[test]
fn background_job_that_reads_the_terminal_stops_and_fg_resumes_it() {
    // The read stops the app with SIGTTIN.
    background_job_stops_and_fg_resumes_it(
        "background_job_that_reads_the_terminal_stops_and_fg_resumes_it",
        &[],
    );
}

#[test]
fn background_job_that_sets_the_terminal_stops_and_fg_resumes_it() {
    // Setting the terminal's attributes from the background stops the app with SIGTTOU, a stop
    // for the terminal as much as SIGTTIN is.
    background_job_stops_and_fg_resumes_it(
        "background_job_that_sets_the_terminal_stops_and_fg_resumes_it",
        &["--set-terminal"],
    );
}

#[test]
fn an_app_that_stops_itself_with_sigstop_stops_the_job() {
    let places = [Where::Shell, Where::Pid1Inside, Where::Pid1Outside];
    for setting in settings(
        "an_app_that_stops_itself_with_sigstop_stops_the_job",
        &places,
    ) {
        let got = session(setting, "self", &["--self-stop"]);
        // As PID 1 (see ctrl_z_stops_the_job_and_fg_resumes_it) the app is resumed at once.
        assert_eq!(got.stopped, !setting.is_pid1(), "{setting} {got:?}");
        assert_read_its_input(setting, &got);
        assert_eq!(got.conts(), Some(1), "{setting} {got:?}");
    }
}

#[test]
fn an_orphaned_job_is_hung_up_instead_of_stopped_for_ever() {
    // Nobody can resume an orphaned process group, so meshwait must not stop in one. The app,
    // stopped reading the terminal, is sent SIGHUP and SIGCONT instead, as the kernel does to
    // stopped members of orphaned groups; it dies of the SIGHUP. Only as a shell's job: PID 1
    // never stops itself, orphaned or not.
    for setting in settings(
        "an_orphaned_job_is_hung_up_instead_of_stopped_for_ever",
        &[Where::Shell],
    ) {
        let got = session(setting, "orphaned", &[]);
        assert_eq!(got.line("stopped-left"), Some("0"), "{setting} {got:?}");
        assert_eq!(got.errors, 0, "{setting} {got:?}");
    }
}

#[test]
fn an_orphaned_app_that_survives_the_hangup_is_hung_up_once_then_left_stopped() {
    // An app that handles SIGHUP and reads the terminal again stops again. Hanging it up and
    // continuing it each time would go on for ever; it is hung up once, then left stopped with
    // one warning.
    for setting in settings(
        "an_orphaned_app_that_survives_the_hangup_is_hung_up_once_then_left_stopped",
        &[Where::Shell],
    ) {
        // It stops itself first: not a stop for the terminal, so it is continued without a
        // hang-up; the one hang-up is for its read.
        let got = session(setting, "orphaned", &["--self-stop", "--survive-hup"]);
        assert_eq!(got.hangups, 1, "{setting} {got:?}");
        assert_eq!(got.line("stopped-left"), Some("1"), "{setting} {got:?}");
        assert_eq!(got.warnings, 1, "{setting} {got:?}");
        assert_eq!(got.errors, 0, "{setting} {got:?}");
    }
}

#[test]
fn a_script_that_runs_meshwait_stops_as_one_job_and_gets_the_terminal_back() {
    // meshwait shares the group of the script that runs it, and that group is not orphaned: the
    // interactive shell above the script resumes it. So Ctrl-Z stops the job (the app is not
    // hung up), and once the app has ended the terminal is back with meshwait's group, where
    // the script reads its own line: left with the app's finished group, the script's read
    // would stop it.
    for setting in settings(
        "a_script_that_runs_meshwait_stops_as_one_job_and_gets_the_terminal_back",
        &[Where::Shell],
    ) {
        let got = session(setting, "script", &[]);
        assert!(got.stopped, "{setting} {got:?}");
        assert_read_its_input(setting, &got);
        assert_eq!(got.conts(), Some(1), "{setting} {got:?}");
        assert_eq!(got.line("script-read"), Some("yes"), "{setting} {got:?}");
    }
}

#[test]
fn a_background_job_that_ends_leaves_the_terminal_with_the_shell() {
    // meshwait takes the terminal back after its app only from the app's group: a background
    // app never had it, and taking it would steal it from the shell.
    for setting in settings(
        "a_background_job_that_ends_leaves_the_terminal_with_the_shell",
        &[Where::Shell],
    ) {
        let got = session(setting, "background-exit", &["--no-read"]);
        assert_eq!(got.line("foreground"), Some("shell"), "{setting} {got:?}");
        assert_eq!(got.exit, "0", "{setting} {got:?}");
        assert_eq!(got.conts(), Some(0), "{setting} {got:?}");
    }
}

#[test]
fn signals_still_reach_an_app_left_stopped_and_meshwait_survives_being_stopped() {
    // While the app waits, stopped, for a terminal meshwait cannot give it, meshwait looks at
    // the terminal on a timer; signals must still be taken and forwarded meanwhile. A SIGSTOP
    // and SIGCONT of meshwait (from outside its namespace, where PID 1 can be stopped)
    // interrupt that wait, which is no error; the SIGCONT is forwarded. Then SIGTERM is
    // forwarded, followed by a SIGCONT (a stopped process leaves even SIGTERM pending), and
    // kills the app; meshwait ends with 143.
    for setting in settings(
        "signals_still_reach_an_app_left_stopped_and_meshwait_survives_being_stopped",
        &[Where::Pid1Outside],
    ) {
        let got = session(setting, "parked-term", &[]);
        assert_eq!(got.exit, "143", "{setting} {got:?}");
        assert_eq!(got.errors, 0, "{setting} {got:?}");
        assert_eq!(got.warnings, 1, "{setting} {got:?}");
    }
}

#[test]
fn a_sigcont_from_outside_takes_an_app_left_stopped_out_of_meshwaits_hands() {
    // A SIGCONT sent to meshwait while the app waits for the terminal is forwarded, and the app
    // is then someone else's to manage: here it gives the terminal up. The later `fg` must not
    // make meshwait hand it the terminal and continue it a second time.
    for setting in settings(
        "a_sigcont_from_outside_takes_an_app_left_stopped_out_of_meshwaits_hands",
        &[Where::Pid1Outside],
    ) {
        let got = session(setting, "give-up", &["--give-up-on-cont"]);
        assert_eq!(got.exit, "0", "{setting} {got:?}");
        assert_eq!(got.conts(), Some(1), "{setting} {got:?}");
        assert_eq!(got.errors, 0, "{setting} {got:?}");
    }
}

#[test]
fn in_a_session_of_its_own_an_app_that_stops_itself_is_resumed_not_hung_up() {
    // `setsid` puts meshwait in a session of its own, apart from its parent's: its group is
    // orphaned, so it must not stop (nobody would resume it), and a stop that is not for the
    // terminal is undone without a hang-up, as the kernel makes SIGTSTP do nothing in an
    // orphaned group.
    for setting in settings(
        "in_a_session_of_its_own_an_app_that_stops_itself_is_resumed_not_hung_up",
        &[Where::Setsid],
    ) {
        let got = session(setting, "self", &["--self-stop"]);
        assert!(!got.stopped, "{setting} {got:?}");
        assert_read_its_input(setting, &got);
        assert_eq!(got.conts(), Some(1), "{setting} {got:?}");
        assert_eq!(got.reported("hangups"), Some("0"), "{setting} {got:?}");
    }
}

#[test]
fn as_pid1_a_stop_not_for_the_terminal_is_undone_even_from_the_background() {
    // A background job under `unshare --pid`: meshwait cannot hand the app the terminal, but
    // the app stopped itself, which resuming it undoes at once; only its later read of the
    // terminal leaves it stopped (one warning) until `fg`. Two SIGCONTs: one for each stop.
    for setting in settings(
        "as_pid1_a_stop_not_for_the_terminal_is_undone_even_from_the_background",
        &[Where::Pid1Outside],
    ) {
        let got = session(setting, "background", &["--self-stop"]);
        assert_eq!(got.exit, "0", "{setting} {got:?}");
        assert_eq!(got.conts(), Some(2), "{setting} {got:?}");
        assert_eq!(got.warnings, 1, "{setting} {got:?}");
        assert_eq!(got.errors, 0, "{setting} {got:?}");
    }
}

#[test]
fn without_a_terminal_a_stopped_app_stays_stopped_until_continued() {
    // Job control applies to a terminal only. Without one a stop comes from outside (a
    // debugger, `kill -STOP`) and is left alone; a SIGCONT to meshwait is forwarded.
    let mut cmd = clean(MESHWAIT);
    cmd.args(["--mesh", "none", "--", python()])
        .args([&helper("countcont.py"), "--self-stop"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = spawn(cmd);
    let app_state = |meshwait: u32| -> Option<String> {
        let children =
            std::fs::read_to_string(format!("/proc/{meshwait}/task/{meshwait}/children")).ok()?;
        let app = children.split_whitespace().next()?.parse().ok()?;
        proc_stat(app)?.into_iter().next()
    };
    let stopped = eventually(Duration::from_secs(5), || {
        app_state(child.id()).as_deref() == Some("T")
    });
    std::thread::sleep(Duration::from_millis(500));
    let still = app_state(child.id());
    send(child.id(), libc::SIGCONT);
    let status = wait_or_kill(&mut child, Duration::from_secs(10));
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(stopped, "the app never stopped");
    assert_eq!(still.as_deref(), Some("T"), "the app did not stay stopped");
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{out}");
    assert!(out.contains("app: conts=1 "), "{out}");
}

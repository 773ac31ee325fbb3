//! Interactive use: the app gets the terminal; a job-control shell sees meshwait stop with its
//! app, and `fg` resumes both with the terminal back in the app's hands. Each case runs with and
//! without `--process-group`, with meshwait as a shell's job (not PID 1), and as PID 1 of a PID
//! namespace with the terminal owned inside it (`docker run -it`) and outside it (`unshare
//! --pid` run from a shell).

mod common;

use std::process::Command;

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
        self.place != Where::Shell
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
    places
        .iter()
        .filter(|p| **p == Where::Shell || pid1)
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
    lines: Vec<String>,
}

impl Session {
    fn conts(&self) -> Option<usize> {
        self.output
            .strip_prefix("app: conts=")
            .and_then(|n| n.parse().ok())
    }
}

/// Drives one session through the helper.
fn session(setting: Setting, mode: &str, app_args: &[&str]) -> Session {
    let place = match setting.place {
        Where::Shell => "shell",
        Where::Pid1Inside => "pid1-inside",
        Where::Pid1Outside => "pid1-outside",
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
    let places = [Where::Shell, Where::Pid1Inside, Where::Pid1Outside];
    for setting in settings("ctrl_z_stops_the_job_and_fg_resumes_it", &places) {
        let got = session(setting, "ctrl-z", &[]);
        // As PID 1 the kernel ignores the SIGSTOP meshwait would send itself, so it cannot stop
        // with the app: it resumes the app at once, and Ctrl-Z does nothing, as it does to an
        // app that is PID 1 itself. The shell sees no stop.
        assert_eq!(got.stopped, !setting.is_pid1(), "{setting} {got:?}");
        assert_read_its_input(setting, &got);
        // One stop, one SIGCONT: the shell's `fg` (not also a second one forwarded by meshwait),
        // or meshwait's own as PID 1.
        assert_eq!(got.conts(), Some(1), "{setting} {got:?}");
    }
}

#[test]
fn background_job_that_reads_the_terminal_stops_and_fg_resumes_it() {
    // With the terminal inside meshwait's namespace meshwait is the session leader, with no
    // shell to start it in the background: that case does not arise.
    let places = [Where::Shell, Where::Pid1Outside];
    for setting in settings(
        "background_job_that_reads_the_terminal_stops_and_fg_resumes_it",
        &places,
    ) {
        let got = session(setting, "background", &[]);
        assert_eq!(got.exit, "0", "{setting} {got:?}");
        assert!(
            got.conts().is_some(),
            "{setting} the app never read EOF: {got:?}"
        );
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
    // Nobody can resume an orphaned process group, so meshwait must not stop in one: the app is
    // sent SIGHUP and SIGCONT instead, as the kernel does to stopped members of orphaned groups.
    // Only as a shell's job: PID 1 never stops itself, orphaned or not.
    for setting in settings(
        "an_orphaned_job_is_hung_up_instead_of_stopped_for_ever",
        &[Where::Shell],
    ) {
        let got = session(setting, "orphaned", &[]);
        assert_eq!(got.lines, ["stopped-left 0"], "{setting}");
    }
}

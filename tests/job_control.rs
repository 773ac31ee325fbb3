//! Interactive use: a job-control shell sees meshwait stop with its app, and `fg` resumes both
//! with the terminal back in the app's hands.

mod common;

use std::process::Command;

use common::*;

/// Drives an interactive bash through the helper; `None` when there is no bash here.
fn session(mode: &str, app_args: &[&str]) -> Option<Vec<String>> {
    if Command::new("bash").arg("-c").arg("true").status().is_err() {
        eprintln!("skipped: no bash");
        return None;
    }
    let out = Command::new(python())
        .args([
            &helper("jobcontrol.py"),
            MESHWAIT,
            mode,
            python(),
            &helper("countcont.py"),
        ])
        .args(app_args)
        .output()
        .unwrap();
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
    )
}

/// The job stopped, resumed, read "ping" and EOF from the terminal, and got exactly one SIGCONT.
fn assert_stopped_and_resumed_once(lines: &[String]) {
    assert_eq!(
        lines.first().map(String::as_str),
        Some("stopped"),
        "{lines:?}"
    );
    // The app read its input and EOF after fg, so the terminal was the app's again.
    assert_eq!(
        lines.get(1).map(String::as_str),
        Some("exit 0"),
        "{lines:?}"
    );
    // One `fg`, one SIGCONT: the shell's, not also a second one forwarded by meshwait.
    assert_eq!(
        lines.get(2).map(String::as_str),
        Some("output app: conts=1"),
        "{lines:?}"
    );
}

#[test]
fn ctrl_z_stops_the_job_and_fg_resumes_it() {
    let Some(lines) = session("ctrl-z", &[]) else {
        return;
    };
    assert_stopped_and_resumed_once(&lines);
}

#[test]
fn background_job_that_reads_the_terminal_stops_and_fg_resumes_it() {
    let Some(lines) = session("background", &[]) else {
        return;
    };
    assert_stopped_and_resumed_once(&lines);
}

#[test]
fn an_app_that_stops_itself_with_sigstop_stops_the_job() {
    let Some(lines) = session("self", &["--self-stop"]) else {
        return;
    };
    assert_stopped_and_resumed_once(&lines);
}

#[test]
fn an_orphaned_job_is_hung_up_instead_of_stopped_for_ever() {
    // Nobody can resume an orphaned process group, so meshwait must not stop in one: the app is
    // sent SIGHUP and SIGCONT instead, as the kernel does to stopped members of orphaned groups.
    let Some(lines) = session("orphaned", &[]) else {
        return;
    };
    assert_eq!(lines, ["stopped-left 0"]);
}

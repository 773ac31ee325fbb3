//! Interactive use: Ctrl-Z in a shell stops meshwait with its app, and `fg` resumes both.

mod common;

use std::process::Command;

use common::*;

/// Drives an interactive bash through the helper; `None` when there is no bash here.
fn session(mode: &str) -> Option<String> {
    if Command::new("bash").arg("-c").arg("true").status().is_err() {
        eprintln!("skipped: no bash");
        return None;
    }
    let out = Command::new(python())
        .args([&helper("jobcontrol.py"), MESHWAIT, mode])
        .output()
        .unwrap();
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn background_job_that_reads_the_terminal_stops_and_fg_resumes_it() {
    let Some(text) = session("background") else {
        return;
    };
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("stopped"), "{text}");
    assert_eq!(lines.next(), Some("exit 0"), "{text}");
}

#[test]
fn ctrl_z_stops_the_job_and_fg_resumes_it() {
    let Some(text) = session("ctrl-z") else {
        return;
    };
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("stopped"), "{text}");
    // cat got its input and EOF from the terminal after fg, so the terminal was the app's again.
    assert_eq!(lines.next(), Some("exit 0"), "{text}");
}

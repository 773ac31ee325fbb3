//! Interactive use: Ctrl-Z in a shell stops meshwait with its app, and `fg` resumes both.

mod common;

use std::process::Command;

use common::*;

#[test]
fn ctrl_z_stops_the_job_and_fg_resumes_it() {
    if Command::new("bash").arg("-c").arg("true").status().is_err() {
        eprintln!("skipped: no bash");
        return;
    }
    let out = Command::new(python())
        .args([&helper("jobcontrol.py"), MESHWAIT])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("stopped"), "{text}");
    // cat got its input and EOF from the terminal after fg, so the terminal was the app's again.
    assert_eq!(lines.next(), Some("exit 0"), "{text}");
}

//! The meshwaits this doctor can see in the process table, and what their command lines and
//! environments say: which one supervises this container's app, and whether it will quit the
//! proxy. Reading another meshwait's argv takes meshwait's own command-line definition, which is
//! why this lives with the commands and not with the process table.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;

use clap::CommandFactory;
use clap::builder::{BoolishValueParser, TypedValueParser};

use crate::commands::argv;
use crate::commands::cli::Cli;
use crate::run::process_table::Process;

/// How much of a meshwait's environment is read for its quit settings: a pod spec's environment
/// is a few KiB, and a process with a huge one cannot make doctor read megabytes. A setting past
/// the cap goes unseen, which only softens the quit check from a failure to information.
const ENVIRON_READ_MAX: u64 = 64 * 1024;

/// The meshwaits in run mode that this doctor can see, other than itself.
pub struct Meshwaits<'a> {
    /// In this container, lowest pid first: the first supervises the app.
    pub here: Vec<&'a Process>,
    /// Calling themselves meshwait in another container of a shared PID namespace, or where
    /// /proc does not say (another user): they supervise nothing here.
    pub elsewhere: Vec<(&'a Process, Option<String>)>,
}

impl<'a> Meshwaits<'a> {
    pub fn among(processes: &'a [Process], me: u32) -> Meshwaits<'a> {
        let mut found = Meshwaits {
            here: Vec::new(),
            elsewhere: Vec::new(),
        };
        for p in processes {
            if p.pid == me || !supervises(p) {
                continue;
            }
            match p.shares_mounts_with_me() {
                Ok(true) => found.here.push(p),
                Ok(false) => found.elsewhere.push((p, None)),
                // A PID 1 in run mode is this container's entrypoint: a shared PID namespace's
                // PID 1 is the pod's pause process, never a meshwait.
                Err(_) if p.pid == 1 => found.here.push(p),
                Err(e) => found.elsewhere.push((p, Some(e.to_string()))),
            }
        }
        found.here.sort_by_key(|p| p.pid);
        found
    }
}

/// A meshwait in run mode: the one that gates and supervises an app (not a `doctor`,
/// `drain`, `conns`, `ready` or `install` of the moment). It says nothing about where it runs:
/// see `Process::shares_mounts_with_me`.
pub fn supervises(p: &Process) -> bool {
    // A zombie's argv reads empty, which would parse as a bare `meshwait`.
    if p.comm != "meshwait" || p.zombie || p.argv.is_empty() {
        return false;
    }
    let args: Vec<OsString> = p.argv.iter().map(OsString::from).collect();
    argv::is_run_mode(&Cli::command(), &args)
}

/// Whether this meshwait was told to quit the proxy when its app ends: by flag, or by an
/// environment variable when /proc lets us read its environment (same user, or root).
pub fn quits_proxy(p: &Process) -> Option<bool> {
    // meshwait's own options only: the same words after `--` are the app's.
    if p.argv
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "--quit-proxy" || a.starts_with("--quit-url") || a.starts_with("--quit-on"))
    {
        return Some(true);
    }
    let mut environ = Vec::new();
    File::open(format!("/proc/{}/environ", p.pid))
        .and_then(|f| f.take(ENVIRON_READ_MAX).read_to_end(&mut environ))
        .ok()?;
    Some(quit_asked_in(&environ))
}

/// Whether an environment block (NUL-separated `KEY=value`) asks meshwait to quit the proxy.
fn quit_asked_in(environ: &[u8]) -> bool {
    environ.split(|&b| b == 0).any(|entry| {
        let entry = String::from_utf8_lossy(entry);
        match entry.split_once('=') {
            // Read as meshwait reads it (a list of our own had missed `t`).
            Some(("MESHWAIT_QUIT_PROXY", v)) => BoolishValueParser::new()
                .parse_ref(&clap::Command::new("meshwait"), None, OsStr::new(v))
                .unwrap_or(false),
            Some(("MESHWAIT_QUIT_URL" | "MESHWAIT_QUIT_ON", v)) => !v.is_empty(),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(argv: &[&str]) -> Process {
        crate::run::process_table::meshwait_with(argv)
    }

    #[test]
    fn run_mode_is_told_from_one_shot_commands() {
        assert!(supervises(&process(&["meshwait", "--", "app"])));
        assert!(supervises(&process(&[
            "/bin/meshwait",
            "-q",
            "python",
            "app.py"
        ])));
        assert!(supervises(&process(&["meshwait", "run", "app"])));
        assert!(!supervises(&process(&["meshwait", "doctor"])));
        assert!(!supervises(&process(&[
            "meshwait",
            "-q",
            "--log-format",
            "json",
            "drain"
        ])));
        let mut other = process(&["tini", "--", "app"]);
        other.comm = "tini".into();
        assert!(!supervises(&other));
    }

    /// Guards zombies: an exited meshwait's argv reads empty, which parsed as a bare `meshwait`
    /// (run mode), so an unreaped one passed the init check.
    #[test]
    fn zombies_and_argv_less_processes_supervise_nothing() {
        let mut zombie = process(&["meshwait", "--", "app"]);
        zombie.zombie = true;
        assert!(!supervises(&zombie));
        assert!(!supervises(&process(&[])));
    }

    #[test]
    fn quit_flags_are_seen_in_argv() {
        assert_eq!(
            quits_proxy(&process(&["meshwait", "--quit-proxy", "--", "job"])),
            Some(true)
        );
        assert_eq!(
            quits_proxy(&process(&[
                "meshwait",
                "--quit-url=http://localhost:9091/quitquitquit",
                "job"
            ])),
            Some(true)
        );
    }

    /// Guards the flags' place: `--quit-proxy` among the app's own arguments said that meshwait
    /// would quit the proxy.
    #[test]
    fn quit_flags_after_the_double_dash_are_the_apps() {
        // Whatever PID 1's environment here says, the app's `--quit-proxy` is not meshwait's.
        assert_ne!(
            quits_proxy(&process(&["meshwait", "--", "job", "--quit-proxy"])),
            Some(true)
        );
    }

    /// Guards the bound on a neighbour's environment: read up to 64 KiB, not beyond.
    #[test]
    fn quit_settings_are_read_within_the_environments_first_64_kib() {
        let seen_after = |filler: usize| {
            let mut sleeper = std::process::Command::new("sleep")
                .arg("5")
                .env_clear()
                .env("A_FILLER", "x".repeat(filler))
                .env("MESHWAIT_QUIT_PROXY", "1")
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(100));
            let mut p = process(&["sleep", "5"]);
            p.pid = sleeper.id();
            let quits = quits_proxy(&p);
            let _ = sleeper.kill();
            let _ = sleeper.wait();
            quits
        };
        assert_eq!(seen_after(30_000), Some(true));
        assert_eq!(seen_after(100_000), Some(false));
    }

    #[test]
    fn quit_settings_in_the_environment() {
        assert!(quit_asked_in(b"PATH=/bin\0MESHWAIT_QUIT_PROXY=t\0"));
        assert!(quit_asked_in(b"MESHWAIT_QUIT_PROXY=Yes"));
        assert!(!quit_asked_in(b"MESHWAIT_QUIT_PROXY=false\0HOME=/"));
        assert!(!quit_asked_in(b"MESHWAIT_QUIT_PROXY=maybe"));
        assert!(!quit_asked_in(b"MESHWAIT_QUIT_URL="));
        assert!(!quit_asked_in(b"MESHWAIT_QUIT_ON="));
        assert!(quit_asked_in(b"MESHWAIT_QUIT_ON=always"));
        assert!(quit_asked_in(
            b"MESHWAIT_QUIT_URL=http://localhost:9091/quitquitquit"
        ));
    }
}

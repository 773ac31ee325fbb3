//! Who runs this container: PID 1, and any meshwait supervising an app here, read from /proc.
//!
//! `meshwait doctor` usually arrives by `kubectl exec`, as a sibling of the app rather than its
//! child, so it cannot ask its own parent; it looks through the PID namespace instead.

use std::ffi::{OsStr, OsString};
use std::fs;

use clap::CommandFactory;
use clap::builder::{BoolishValueParser, TypedValueParser};

use crate::argv;
use crate::cli::Cli;

/// A process as /proc shows it to an unprivileged reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    /// The kernel's name for it (the executable's name, at most 15 bytes).
    pub comm: String,
    /// argv, or empty when unreadable (a kernel thread, a process already gone).
    pub argv: Vec<String>,
}

impl Process {
    pub fn read(pid: u32) -> Option<Process> {
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        let argv = fs::read(format!("/proc/{pid}/cmdline"))
            .map(|raw| {
                raw.split(|&b| b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        Some(Process {
            pid,
            comm: comm.trim_end().to_string(),
            argv,
        })
    }

    /// argv joined for display, or the comm in brackets as `ps` shows argv-less processes.
    pub fn command_line(&self) -> String {
        if self.argv.is_empty() {
            format!("[{}]", self.comm)
        } else {
            self.argv.join(" ")
        }
    }

    /// A meshwait in run mode: the one that gates and supervises an app (not a `doctor`,
    /// `drain`, `conns`, `ready` or `install` of the moment).
    pub fn is_supervising_meshwait(&self) -> bool {
        if self.comm != "meshwait" {
            return false;
        }
        let args: Vec<OsString> = self.argv.iter().map(OsString::from).collect();
        argv::is_run_mode(&Cli::command(), &args)
    }

    /// Whether this meshwait was told to quit the proxy when its app ends: by flag, or by an
    /// environment variable when /proc lets us read its environment (same user, or root).
    pub fn quits_proxy(&self) -> Option<bool> {
        if self
            .argv
            .iter()
            .any(|a| a == "--quit-proxy" || a.starts_with("--quit-url"))
        {
            return Some(true);
        }
        let environ = fs::read(format!("/proc/{}/environ", self.pid)).ok()?;
        Some(quit_asked_in(&environ))
    }
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
            Some(("MESHWAIT_QUIT_URL", v)) => !v.is_empty(),
            _ => false,
        }
    })
}

/// Every process of the PID namespace, in the order /proc lists them.
pub fn all() -> Vec<Process> {
    fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| Process::read(e.ok()?.file_name().to_str()?.parse().ok()?))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(argv: &[&str]) -> Process {
        Process {
            pid: 1,
            comm: "meshwait".into(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn run_mode_is_told_from_one_shot_commands() {
        assert!(process(&["meshwait", "--", "app"]).is_supervising_meshwait());
        assert!(process(&["/bin/meshwait", "-q", "python", "app.py"]).is_supervising_meshwait());
        assert!(process(&["meshwait", "run", "app"]).is_supervising_meshwait());
        assert!(!process(&["meshwait", "doctor"]).is_supervising_meshwait());
        assert!(
            !process(&["meshwait", "-q", "--log-format", "json", "drain"])
                .is_supervising_meshwait()
        );
        let mut other = process(&["tini", "--", "app"]);
        other.comm = "tini".into();
        assert!(!other.is_supervising_meshwait());
    }

    #[test]
    fn quit_flags_are_seen_in_argv() {
        assert_eq!(
            process(&["meshwait", "--quit-proxy", "--", "job"]).quits_proxy(),
            Some(true)
        );
        assert_eq!(
            process(&[
                "meshwait",
                "--quit-url=http://localhost:9091/quitquitquit",
                "job"
            ])
            .quits_proxy(),
            Some(true)
        );
    }

    #[test]
    fn quit_settings_in_the_environment() {
        assert!(quit_asked_in(b"PATH=/bin\0MESHWAIT_QUIT_PROXY=t\0"));
        assert!(quit_asked_in(b"MESHWAIT_QUIT_PROXY=Yes"));
        assert!(!quit_asked_in(b"MESHWAIT_QUIT_PROXY=false\0HOME=/"));
        assert!(!quit_asked_in(b"MESHWAIT_QUIT_PROXY=maybe"));
        assert!(!quit_asked_in(b"MESHWAIT_QUIT_URL="));
        assert!(quit_asked_in(
            b"MESHWAIT_QUIT_URL=http://localhost:9091/quitquitquit"
        ));
    }

    #[test]
    fn reads_this_process() {
        let me = Process::read(std::process::id()).unwrap();
        assert!(!me.comm.is_empty());
        assert!(!me.argv.is_empty());
        assert!(all().iter().any(|p| p.pid == std::process::id()));
    }
}

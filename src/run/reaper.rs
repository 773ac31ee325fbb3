//! The one place that calls waitpid.
//!
//! A `waitpid(-1)` loop steals exit statuses from `Child::wait` and tokio's process driver, so
//! meshwait never uses those: this reaper collects every child, recognises the app's pid among
//! them, and keeps its status. One SIGCHLD may stand for many exits (standard signals merge), so
//! each call drains everything that has exited.

use nix::errno::Errno;
use nix::unistd::Pid;

use crate::exit_code;

/// The `component` of this module's log lines. Users filter logs by it, so it is fixed here,
/// not taken from the module path, which moves when the code is reorganised.
const LOG: &str = "reaper";

/// How a process ended, as meshwait reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Signalled(i32),
    /// The app is gone but its status never reached us (something else reaped it).
    Lost,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Ended::Exited(code) => write!(f, "exited with code {code}"),
            Ended::Signalled(n) => match crate::run::signal::Signal::from_raw(n) {
                Some(signal) => write!(f, "was killed by {signal}"),
                None => write!(f, "was killed by signal {n}"),
            },
            Ended::Lost => write!(f, "ended, but its exit status was lost"),
        }
    }
}

impl Ended {
    /// The shell convention: the exit code, or 128+N for death by signal N.
    pub fn exit_code(self) -> i32 {
        match self {
            Ended::Exited(code) => code,
            Ended::Signalled(signal) => exit_code::for_signal(signal),
            Ended::Lost => exit_code::STATUS_LOST,
        }
    }
}

/// What one drain of the zombie queue found.
#[derive(Debug, Default)]
pub struct Reaped {
    /// The watched child's end, if it was among them.
    pub main: Option<Ended>,
    /// No children are left at all.
    pub none_left: bool,
    /// The watched child was stopped by this signal (only reported when asked for).
    pub main_stopped: Option<i32>,
}

/// Makes meshwait the reaper of its orphaned descendants when it is not PID 1.
///
/// Without this, grandchildren whose parent dies are reparented to the real init (or the nearest
/// subreaper) and their zombies are invisible to us.
pub fn become_subreaper() -> nix::Result<()> {
    if std::process::id() == 1 {
        return Ok(());
    }
    nix::sys::prctl::set_child_subreaper(true)
}

/// Collects every exited child without blocking; `main` is the pid whose status matters. With
/// `stops`, a stop of `main` is reported too.
pub fn reap(main: Option<Pid>, stops: bool) -> Reaped {
    let flags = if stops {
        libc::WNOHANG | libc::WUNTRACED
    } else {
        libc::WNOHANG
    };
    let mut found = Reaped::default();
    loop {
        let mut status = 0;
        // libc rather than nix's waitpid: nix converts the signal into its `Signal` enum, which has
        // no real-time signals, and fails *after* the zombie is gone, losing the app's status.
        // SAFETY: status is a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, flags) };
        if pid == 0 {
            return found;
        }
        if pid < 0 {
            match Errno::last() {
                Errno::EINTR => continue,
                Errno::ECHILD => found.none_left = true,
                e => tracing::warn!(target: LOG, error = %e, "waitpid failed"),
            }
            return found;
        }
        let ended = if libc::WIFEXITED(status) {
            Ended::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            Ended::Signalled(libc::WTERMSIG(status))
        } else {
            if libc::WIFSTOPPED(status) && Some(pid) == main.map(Pid::as_raw) {
                found.main_stopped = Some(libc::WSTOPSIG(status));
            }
            continue;
        };
        if Some(pid) == main.map(Pid::as_raw) {
            found.main = Some(ended);
        } else {
            tracing::debug!(target: LOG, pid, status = ?ended, "reaped a descendant");
        }
    }
}

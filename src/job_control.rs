//! Interactive use from a shell: when the app stops (Ctrl-Z, a background read of the terminal,
//! an editor suspending itself), meshwait must stop with it.
//!
//! meshwait hands the terminal to the app's process group, so the terminal's SIGTSTP reaches the
//! app alone. The shell, though, waits on meshwait: if only the app stopped, the shell would hang
//! with no terminal until someone sent SIGCONT. So when the app stops, meshwait stops itself;
//! when the shell resumes it (`fg` or `bg`), it gives the terminal back to the app's group if the
//! shell gave it to us, and resumes the app.
//!
//! As PID 1 (`docker run -it`) the kernel ignores the SIGSTOP meshwait sends itself, so the app
//! is resumed at once: Ctrl-Z does nothing, as it would to an app running as PID 1 itself.

use nix::unistd::Pid;

use crate::launch::Launched;
use crate::signal_name::Signal;
use crate::signals;

/// Follows the app into a stop. Returns once meshwait has been resumed (or could not stop).
pub fn follow_stop(app: Launched, stop: i32) {
    // Every stop counts, SIGSTOP included: editors such as nano catch SIGTSTP and then stop
    // their group with SIGSTOP, and shells treat any stop of a foreground job the same way.
    tracing::debug!(pid = app.pid.as_raw(), stop, "app stopped; stopping too");
    if std::process::id() == 1 {
        // The kernel would ignore our SIGSTOP; resume the app instead of leaving it stopped.
    } else if own_group_is_orphaned() {
        // No shell can resume an orphaned group, so stopping would be for ever. Do what the
        // kernel does to stopped members of an orphaned group: hang up, then continue.
        let _ = signals::send(group_of(app), Signal::HUP);
    } else {
        // SIGSTOP cannot be blocked: this returns once the shell sends SIGCONT.
        let _ = signals::send(Pid::this(), Signal::STOP);
        // The shell's SIGCONT is still pending (meshwait blocks it): the app gets exactly one,
        // below, so this one must not be forwarded too.
        signals::discard_pending(Signal::CONT);
        if foreground_is(Pid::from_raw(
            // SAFETY: getpgrp cannot fail.
            unsafe { libc::getpgrp() },
        )) {
            give_terminal(app.group);
        }
    }
    let _ = signals::send(group_of(app), Signal::CONT);
    tracing::debug!(pid = app.pid.as_raw(), "resumed; app continued");
}

/// After the app exits: take the terminal back from its group, or the shell's next job (or the
/// script that ran meshwait) would be stopped reading a terminal it no longer owns.
pub fn reclaim_terminal(app: Launched) {
    if app.on_terminal && foreground_is(app.group) {
        // SAFETY: getpgrp cannot fail.
        give_terminal(Pid::from_raw(unsafe { libc::getpgrp() }));
    }
}

/// Whether `group` is the terminal's foreground group. A 0 from tcgetpgrp (the foreground group
/// lies outside our PID namespace) is "unknown", never a match.
pub fn foreground_is(group: Pid) -> bool {
    // SAFETY: tcgetpgrp only queries fd 0.
    let foreground = unsafe { libc::tcgetpgrp(libc::STDIN_FILENO) };
    foreground > 0 && foreground == group.as_raw()
}

fn give_terminal(group: Pid) {
    // SAFETY: SIGTTOU is blocked, so tcsetpgrp from a background group does not stop us.
    unsafe { libc::tcsetpgrp(libc::STDIN_FILENO, group.as_raw()) };
}

fn group_of(app: Launched) -> Pid {
    Pid::from_raw(-app.group.as_raw())
}

/// POSIX: a group is orphaned when no member has a parent in another group of the same session.
/// meshwait's own parent is the one that matters (the shell that started the job).
fn own_group_is_orphaned() -> bool {
    // SAFETY: getppid, getsid and getpgid only query.
    unsafe {
        let parent = libc::getppid();
        parent <= 1
            || libc::getsid(parent) != libc::getsid(0)
            || libc::getpgid(parent) == libc::getpgrp()
    }
}

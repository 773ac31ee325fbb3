//! Interactive use from a shell: Ctrl-Z stops the app, and meshwait must stop with it.
//!
//! meshwait hands the terminal to the app's process group, so the terminal's SIGTSTP reaches the
//! app alone. The shell, though, waits on meshwait: if only the app stopped, the shell would hang
//! with the terminal until someone sent SIGCONT. So when the app stops for job control, meshwait
//! stops itself; when the shell resumes it (`fg` or `bg`), it gives the terminal back to the app's
//! group if the shell gave it to us, and resumes the app.
//!
//! As PID 1 (`docker run -it`) the kernel ignores the SIGSTOP meshwait sends itself, so the app
//! is resumed at once: Ctrl-Z does nothing, as it would to an app running as PID 1 itself.

use nix::unistd::Pid;

use crate::launch::Launched;
use crate::signal_name::Signal;
use crate::signals;

/// Follows the app into a job-control stop. Returns after meshwait has been resumed.
pub fn follow_stop(app: Launched, stop: i32) {
    // Only stops that come from the terminal; a SIGSTOP sent to the app alone is the sender's to
    // undo, and stopping meshwait for it would hide the app's state from whoever sent it.
    if !matches!(stop, libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU) {
        return;
    }
    tracing::debug!(
        pid = app.pid.as_raw(),
        "app stopped from the terminal; stopping too"
    );
    // SIGSTOP cannot be blocked: this returns once the shell sends SIGCONT.
    let _ = signals::send(Pid::this(), Signal::STOP);
    // SAFETY: plain terminal queries and updates on fd 0; SIGTTOU is blocked, so tcsetpgrp from
    // what may now be a background group does not stop us.
    unsafe {
        if libc::tcgetpgrp(libc::STDIN_FILENO) == libc::getpgrp() {
            libc::tcsetpgrp(libc::STDIN_FILENO, app.group.as_raw());
        }
    }
    let _ = signals::send(Pid::from_raw(-app.group.as_raw()), Signal::CONT);
    tracing::debug!(pid = app.pid.as_raw(), "resumed; app continued");
}

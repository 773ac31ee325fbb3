//! Starting the app: a child in its own process group, with the signal state meshwait inherited.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::unistd::Pid;

use crate::run::AppPlan;
use crate::run::exec_failure::{self, LaunchError};
use crate::run::incoming_signals::Inherited;
use crate::run::kernel_signals::Mask;
use crate::run::terminal;

/// The running app.
#[derive(Clone, Copy, Debug)]
pub struct Launched {
    pub pid: Pid,
    /// The app leads its own process group, so the group id is its pid.
    pub group: Pid,
    /// stdin is a terminal: interactive use, where job control (Ctrl-Z, `fg`, `bg`) applies.
    pub on_terminal: bool,
}

/// Starts the app. Returns once the exec has succeeded or failed (std waits on a CLOEXEC pipe).
pub fn launch(plan: &AppPlan, inherited: Inherited) -> Result<Launched, LaunchError> {
    let mut command = Command::new(&plan.program);
    command.args(&plan.args);
    for name in plan.not_inherited {
        command.env_remove(name);
    }
    let block_everything = Mask::everything();
    let on_terminal = nix::unistd::isatty(terminal::STDIN).unwrap_or(false);
    // Only a terminal whose foreground is meshwait's own group is meshwait's to hand over.
    let take_terminal = on_terminal && terminal::own_group_is_foreground();
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
    // (rt_sigprocmask, setpgid, tcsetpgrp, rt_sigaction, getpid); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            // Block everything while we move to a new process group (tcsetpgrp from a background
            // group would otherwise stop us with SIGTTOU), whatever std left in the mask; the
            // inherited mask is put back explicitly below.
            block_everything.install()?;
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // Interactive use: hand the terminal to the app's group so Ctrl-C and terminal reads
            // go to the app, as they would without meshwait. Failure only loses that nicety.
            if take_terminal {
                libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpid());
            }
            // std resets SIGPIPE to the default in every child, and meshwait un-ignored SIGCHLD
            // for itself: put back every "ignore" meshwait inherited.
            inherited.restore_ignored();
            // Last: from here on signals reach the app exactly as they would have reached it
            // without meshwait in between.
            inherited.mask.install()?;
            Ok(())
        });
    }
    match command.spawn() {
        Ok(child) => {
            let pid = Pid::from_raw(child.id() as i32);
            // `child` is dropped without wait(): the reaper owns all waitpid calls.
            drop(child);
            Ok(Launched {
                pid,
                group: pid,
                on_terminal,
            })
        }
        Err(e) => Err(exec_failure::explain(&plan.program, &e)),
    }
}

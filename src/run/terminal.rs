//! The terminal on stdin: whether meshwait's process group, or the app's, is its foreground, and
//! handing it over. Launching asks whether the terminal is meshwait's to give the app; job
//! control gives it back and forth as the app stops and resumes.
//!
//! Under `unshare --pid` run from a shell, the terminal's session and foreground group lie
//! outside meshwait's PID namespace, where tcgetpgrp and getpgrp both read 0. Whether meshwait's
//! group is the foreground is then asked of the kernel's job-control check itself
//! (`reads_as_foreground`).

use std::os::fd::BorrowedFd;

use nix::fcntl::{self, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{self, Pid};

/// The terminal: the one on stdin.
///
/// Not `std::io::stdin().as_fd()`: that lends this same descriptor 0, but the first call of
/// `std::io::stdin()` allocates std's global stdin with its 8 KiB read buffer, which stays for
/// the life of the process. meshwait never reads stdin, and as PID 1 it should hold no memory it
/// does not use.
// SAFETY: descriptor 0 is open for the whole run, as a BorrowedFd<'static> requires: main
// points a closed one at /dev/null before anything else (std's start-up does the same for test
// binaries), and nothing in meshwait closes it or puts another file in its place. std's
// `Stdin::as_fd` rests on the same guarantee.
pub const STDIN: BorrowedFd<'static> = unsafe { BorrowedFd::borrow_raw(libc::STDIN_FILENO) };

/// Whether `group` is the terminal's foreground group. A 0 from tcgetpgrp (the foreground group
/// lies outside our PID namespace) is "unknown", never a match.
pub fn foreground_is(group: Pid) -> bool {
    unistd::tcgetpgrp(STDIN).is_ok_and(|foreground| foreground.as_raw() > 0 && foreground == group)
}

/// Whether meshwait's own process group is the foreground of the terminal on stdin, which makes
/// the terminal meshwait's to hand over.
pub fn own_group_is_foreground() -> bool {
    let foreground = unistd::tcgetpgrp(STDIN).map(Pid::as_raw);
    match (foreground, unistd::getpgrp().as_raw()) {
        // Not a terminal, or not meshwait's controlling terminal (ENOTTY).
        (Err(_), _) => false,
        // Both groups lie outside this PID namespace: the same group, or two that cannot be
        // told apart by number (`unshare --pid ... &` from a shell).
        (Ok(0), 0) => reads_as_foreground(),
        (Ok(f), o) => f == o,
    }
}

/// Asks the kernel's job-control check whether the caller is in the terminal's foreground group.
///
/// A read of zero bytes passes that check and takes nothing: from a background group with
/// SIGTTIN blocked (meshwait blocks every signal) the check fails it with EIO and signals no one;
/// from the foreground it returns 0. It reads through a descriptor of its own, opened
/// non-blocking, because on the shared stdin it could wait behind another process's read of the
/// terminal (EAGAIN then still means "foreground": the check comes first). /dev/tty is the
/// controlling terminal, which the caller has found stdin to be (tcgetpgrp did not fail).
fn reads_as_foreground() -> bool {
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let Ok(tty) = fcntl::open(c"/dev/tty", flags, Mode::empty()) else {
        return false;
    };
    matches!(
        unistd::read(&tty, &mut []),
        Ok(0) | Err(nix::errno::Errno::EAGAIN)
    )
}

/// Makes `group` the terminal's foreground; false when the kernel refused.
pub fn give_terminal(group: Pid) -> bool {
    // SIGTTOU is blocked, so tcsetpgrp from a background group does not stop meshwait.
    unistd::tcsetpgrp(STDIN, group).is_ok()
}

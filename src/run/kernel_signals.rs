//! Signal sets and the signal system calls as the kernel has them, without the C library's filter.
//!
//! glibc and musl keep the lowest real-time numbers for themselves (glibc 32 and 33, musl 32 to
//! 34) and hide them: sigaddset and sigaction refuse them, glibc's pthread_sigmask drops them from
//! the mask it installs and musl's from the old mask it reports. To the kernel they are ordinary
//! real-time signals, and other programs use them (a glibc app's SIGRTMIN is 34, the static
//! build's libc is musl). An init has to block, wait for and forward them like every other
//! signal, or `kill -34` ends a meshwait that is not PID 1 and is dropped by one that is. So a
//! mask here is the kernel's bitmap with bits set directly, and every call that takes one is the
//! raw system call.
//!
//! Each function is one system call and allocates nothing: all are async-signal-safe and may run
//! between fork and exec.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{FromRawFd, OwnedFd};

/// The highest signal number. The kernel's sigset_t is 64 bits on every Linux architecture but
/// MIPS, which meshwait is not built for.
pub const LAST: i32 = 64;

/// The kernel's sigset_t: bit N-1 stands for signal N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mask(u64);

/// What the kernel expects as the `sigsetsize` argument: anything else is EINVAL.
const SIZE: usize = std::mem::size_of::<u64>();

impl Mask {
    pub const fn empty() -> Mask {
        Mask(0)
    }

    /// Every signal, 32 to 34 included. The kernel leaves SIGKILL and SIGSTOP out by itself.
    pub const fn everything() -> Mask {
        Mask(u64::MAX)
    }

    pub fn add(&mut self, signal: i32) {
        if (1..=LAST).contains(&signal) {
            self.0 |= 1 << (signal - 1);
        }
    }

    pub fn contains(&self, signal: i32) -> bool {
        (1..=LAST).contains(&signal) && self.0 & (1 << (signal - 1)) != 0
    }

    /// Installs this mask on the calling thread (rt_sigprocmask) and returns the one it replaces,
    /// unfiltered.
    pub fn install(&self) -> io::Result<Mask> {
        let mut old = Mask::empty();
        // SAFETY: both pointers are valid for the call and SIZE is the kernel's sigset size.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                &self.0 as *const u64,
                &mut old.0 as *mut u64,
                SIZE,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(old)
    }

    /// A signalfd (signalfd4) reading the signals in this mask.
    pub fn signalfd(&self, flags: i32) -> io::Result<OwnedFd> {
        // SAFETY: the mask pointer is valid for the call; the result is checked.
        let fd =
            unsafe { libc::syscall(libc::SYS_signalfd4, -1, &self.0 as *const u64, SIZE, flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: signalfd4 returned a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    /// Takes one pending signal of this mask (rt_sigtimedwait), with its details in `info`:
    /// waits for one without `timeout`, at most that long with it (EAGAIN when none came).
    pub fn take(
        &self,
        info: Option<&mut MaybeUninit<libc::siginfo_t>>,
        timeout: Option<&libc::timespec>,
    ) -> io::Result<i32> {
        let info = info.map_or(std::ptr::null_mut(), std::mem::MaybeUninit::as_mut_ptr);
        let timeout = timeout.map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: every pointer is valid for the call or null, which the kernel accepts for info
        // and timeout.
        let signo = unsafe {
            libc::syscall(
                libc::SYS_rt_sigtimedwait,
                &self.0 as *const u64,
                info,
                timeout,
                SIZE,
            )
        };
        if signo < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(signo as i32)
    }
}

/// The kernel's struct sigaction (x86_64 and aarch64 alike). Only dispositions are read or set
/// here, never handlers, so the restorer stays null.
#[repr(C)]
struct Action {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

impl Action {
    /// A disposition with no flags and an empty mask: all meshwait ever sets or reads.
    fn of(handler: libc::sighandler_t) -> Action {
        Action {
            handler,
            flags: 0,
            restorer: 0,
            mask: 0,
        }
    }
}

/// Whether `signal`'s disposition is "ignore" (rt_sigaction, which answers for 32-34 too).
pub fn is_ignored(signal: i32) -> bool {
    let mut old = Action::of(libc::SIG_DFL);
    // SAFETY: a null new action only queries; `old` is a valid out-pointer of the kernel's layout.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signal,
            std::ptr::null::<Action>(),
            &mut old as *mut Action,
            SIZE,
        )
    };
    rc == 0 && old.handler == libc::SIG_IGN
}

/// Sets `signal`'s disposition to "ignore", or to the default (rt_sigaction, which accepts
/// 32-34 too).
pub fn set_ignored(signal: i32, ignore: bool) -> io::Result<()> {
    let action = Action::of(if ignore { libc::SIG_IGN } else { libc::SIG_DFL });
    // SAFETY: `action` is valid for the call and names no handler code.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signal,
            &action as *const Action,
            std::ptr::null_mut::<Action>(),
            SIZE,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_the_kernels() {
        let mut mask = Mask::empty();
        for n in [1, 32, 33, 34, 64] {
            mask.add(n);
        }
        assert_eq!(mask.0, 1 | 0b111 << 31 | 1 << 63);
        assert!(mask.contains(33) && !mask.contains(35));
        mask.add(0);
        mask.add(65);
        assert!(!mask.contains(0) && !mask.contains(65));
    }

    #[test]
    fn the_numbers_libc_keeps_can_be_blocked_and_waited_for() {
        // On a thread of its own: the test harness's other threads must keep their masks.
        std::thread::spawn(|| {
            let old = Mask::everything().install().unwrap();
            let kernel = Mask::everything().install().unwrap();
            for n in [32, 33, 34] {
                assert!(kernel.contains(n), "signal {n} was not blocked");
                // SAFETY: tgkill to this very thread, which blocks the signal.
                unsafe {
                    libc::syscall(libc::SYS_tgkill, libc::getpid(), libc::gettid(), n);
                }
                let zero = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                let mut only = Mask::empty();
                only.add(n);
                assert_eq!(only.take(None, Some(&zero)).unwrap(), n);
            }
            old.install().unwrap();
        })
        .join()
        .unwrap();
    }
}

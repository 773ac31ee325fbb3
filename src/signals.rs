//! How meshwait receives signals: every signal is blocked from the first instruction and read
//! from a signalfd.
//!
//! Why blocking instead of handlers: as PID 1 the kernel discards any signal whose disposition is
//! the default, but a *blocked* signal is always queued ("blocked signals are never ignored",
//! kernel/signal.c), so nothing that arrives before or during the readiness gate is lost. Real-time
//! signals stay queued one instance each, with the sender's pid, so each one is forwarded exactly
//! once. No code runs in signal context, so there is nothing async-signal-unsafe to get wrong, and
//! while nothing arrives the process sleeps without a timer (zero idle wakeups).

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::unix::AsyncFd;

use crate::signal_name::Signal;

/// A raw signal set, copyable so it can be moved into a `pre_exec` closure.
#[derive(Clone, Copy)]
pub struct Mask(libc::sigset_t);

impl Mask {
    /// Every signal the kernel lets us block, including the real-time range.
    ///
    /// Built with sigaddset per number rather than sigfillset so glibc and musl agree: both refuse
    /// the numbers libc reserves for itself (32-34), which are then simply left out.
    pub fn everything() -> Mask {
        let mut mask = Mask::empty();
        for n in 1..=libc::SIGRTMAX() {
            mask.add(n);
        }
        mask
    }

    fn empty() -> Mask {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            Mask(set.assume_init())
        }
    }

    fn add(&mut self, signal: i32) {
        // SAFETY: the set is initialised; sigaddset rejects numbers out of range.
        unsafe { libc::sigaddset(&mut self.0, signal) };
    }

    /// Async-signal-safe (sigismember only reads the set).
    pub fn contains(&self, signal: i32) -> bool {
        // SAFETY: the set is initialised.
        unsafe { libc::sigismember(&self.0, signal) == 1 }
    }

    /// Installs this mask on the calling thread and returns the one it replaces.
    ///
    /// Only pthread_sigmask: safe to call between fork and exec.
    pub fn install(&self) -> io::Result<Mask> {
        let mut old = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: both pointers are valid for the duration of the call.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, old.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        // SAFETY: pthread_sigmask filled `old` on success.
        Ok(Mask(unsafe { old.assume_init() }))
    }
}

/// What meshwait inherited, captured before it changed anything, so the app can be given the same.
#[derive(Clone, Copy)]
pub struct Inherited {
    pub mask: Mask,
    /// Signals whose disposition was "ignore". Ignored dispositions survive exec, so without
    /// meshwait the app would have inherited them; `launch` hands them on.
    pub ignored: Mask,
}

impl Inherited {
    /// Re-applies the inherited "ignore" dispositions. Async-signal-safe (sigismember, signal),
    /// for use between fork and exec, where std has just reset SIGPIPE to the default.
    pub fn restore_ignored(&self) {
        for n in 1..=libc::SIGRTMAX() {
            if self.ignored.contains(n) {
                // SAFETY: setting SIG_IGN has no memory-safety preconditions.
                unsafe { libc::signal(n, libc::SIG_IGN) };
            }
        }
    }
}

/// Blocks every signal and records what was there before. Call first thing in `main`.
pub fn block_all() -> io::Result<Inherited> {
    let mask = Mask::everything().install()?;
    let mut ignored = Mask::empty();
    for n in 1..=libc::SIGRTMAX() {
        let mut action = MaybeUninit::<libc::sigaction>::uninit();
        // SAFETY: a null new action only queries the current disposition.
        let rc = unsafe { libc::sigaction(n, std::ptr::null(), action.as_mut_ptr()) };
        // SAFETY: filled on success.
        if rc == 0 && unsafe { action.assume_init() }.sa_sigaction == libc::SIG_IGN {
            ignored.add(n);
        }
    }
    // An ignored SIGCHLD makes the kernel discard our children's exit statuses (no zombies, so
    // waitpid finds nothing and the app's exit code would be lost). meshwait takes the default
    // for itself; the app still gets "ignored" back through `restore_ignored`.
    if ignored.contains(libc::SIGCHLD) {
        // SAFETY: setting SIG_DFL has no memory-safety preconditions.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) };
    }
    Ok(Inherited { mask, ignored })
}

/// The signals that ask meshwait itself to stop when there is no app to forward them to (during
/// the gate), or to hurry (a second request during clean-up).
fn is_stop_signal(signal: i32) -> bool {
    matches!(
        signal,
        libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGQUIT
    )
}

/// One signal as the kernel reported it.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    pub signal: Signal,
    /// The sender's pid (0 when the kernel itself sent it, e.g. a terminal hang-up).
    pub sender: u32,
    self_inflicted: bool,
    inherited_ignored: bool,
}

impl Received {
    fn new(signo: i32, sender: u32, code: i32, context: &Context) -> io::Result<Received> {
        let signal = Signal::from_raw(signo)
            .ok_or_else(|| io::Error::other(format!("the kernel reported signal {signo}")))?;
        Ok(Received {
            signal,
            sender,
            self_inflicted: sender == context.own_pid
                && (code == libc::SI_USER || code == libc::SI_TKILL),
            inherited_ignored: context.ignored.contains(signo),
        })
    }

    /// TERM, INT, HUP or QUIT from someone else, and not one meshwait was started ignoring (a
    /// HUP under `nohup` is not a request to stop).
    pub fn asks_to_stop(&self) -> bool {
        !self.self_inflicted && !self.inherited_ignored && is_stop_signal(self.signal.raw())
    }

    /// True when meshwait caused this signal itself, e.g. SIGPIPE from writing logs to a closed
    /// pipe. Such signals are side effects of our own I/O and must never reach the app (forwarding
    /// them would invent signals the app was never sent).
    pub fn self_inflicted(&self) -> bool {
        self.self_inflicted
    }
}

/// The blocked signals, readable asynchronously (signalfd) or by blocking (sigwaitinfo).
pub struct Signals {
    fd: AsyncFd<OwnedFd>,
    mask: Mask,
    context: Context,
}

/// What classifying a received signal needs to know.
struct Context {
    /// Cached: comparing every sender with getpid() would add a system call to each forward.
    own_pid: u32,
    ignored: Mask,
}

impl Signals {
    /// Opens a signalfd for everything in `mask`. The signals must already be blocked.
    pub fn open(mask: &Mask, inherited: &Inherited) -> io::Result<Signals> {
        // SAFETY: the set is initialised; the result is checked.
        let raw = unsafe { libc::signalfd(-1, &mask.0, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: signalfd returned a new descriptor that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the OwnedFd is moved into the AsyncFd and neither closed nor replaced while it
        // is registered, so its raw fd stays the same open signalfd.
        let fd = unsafe { AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Signals {
            fd,
            mask: *mask,
            context: Context {
                own_pid: std::process::id(),
                ignored: inherited.ignored,
            },
        })
    }

    /// Waits for the next signal.
    pub async fn next(&mut self) -> io::Result<Received> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| read_one(fd.get_ref().as_raw_fd(), &self.context)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Blocks the thread until the next signal: one system call between the kernel and the
    /// caller, with no event loop in between. For phases where a signal is the only event.
    pub fn wait(&mut self) -> io::Result<Received> {
        let mut info = MaybeUninit::<libc::siginfo_t>::uninit();
        loop {
            // SAFETY: the mask is initialised and `info` is a valid out-pointer.
            let signo = unsafe { libc::sigwaitinfo(&self.mask.0, info.as_mut_ptr()) };
            if signo > 0 {
                // SAFETY: filled by a successful sigwaitinfo.
                let info = unsafe { info.assume_init() };
                // SAFETY: si_pid is meaningful for every signal this process can be sent; for
                // kernel-generated ones it reads 0.
                let sender = unsafe { info.si_pid() } as u32;
                return Received::new(signo, sender, info.si_code, &self.context);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

fn read_one(fd: RawFd, context: &Context) -> io::Result<Received> {
    let mut info = MaybeUninit::<libc::signalfd_siginfo>::uninit();
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: the buffer is exactly one signalfd_siginfo long.
    let n = unsafe { libc::read(fd, info.as_mut_ptr().cast(), size) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "short read from signalfd",
        ));
    }
    // SAFETY: the kernel wrote a whole record.
    let info = unsafe { info.assume_init() };
    Received::new(info.ssi_signo as i32, info.ssi_pid, info.ssi_code, context)
}

/// kill(2) with any signal number: nix's `Signal` enum cannot express real-time signals.
pub fn send(target: nix::unistd::Pid, signal: Signal) -> nix::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    nix::errno::Errno::result(unsafe { libc::kill(target.as_raw(), signal.raw()) }).map(drop)
}

/// Whether any process in the group still exists (kill with signal 0 delivers nothing).
pub fn send_probe(group: nix::unistd::Pid) -> nix::Result<()> {
    // SAFETY: signal 0 only checks for existence and permission.
    nix::errno::Errno::result(unsafe { libc::kill(-group.as_raw(), 0) }).map(drop)
}

/// Removes a pending instance of `signal` (blocked, so it waits in the queue) without acting on it.
pub fn discard_pending(signal: Signal) {
    let mut only = Mask::empty();
    only.add(signal.raw());
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid set and timeout; a null info pointer is allowed. EAGAIN (none pending) is fine.
    unsafe { libc::sigtimedwait(&only.0, std::ptr::null_mut(), &zero) };
}

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
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::task::{self, Poll};

use tokio::io::unix::AsyncFd;

use crate::run::kernel_signals::{self, LAST, Mask};
use crate::run::signal::Signal;

/// What meshwait inherited, captured before it changed anything, so the app can be given the same.
#[derive(Clone, Copy)]
pub struct Inherited {
    pub mask: Mask,
    /// Signals whose disposition was "ignore". Ignored dispositions survive exec, so without
    /// meshwait the app would have inherited them; `launch` hands them on.
    pub ignored: Mask,
}

impl Inherited {
    /// Re-applies the inherited "ignore" dispositions, 32-34 included. Async-signal-safe (raw
    /// rt_sigaction), for use between fork and exec, where std has just reset SIGPIPE to the
    /// default. meshwait never sets a disposition of 32-34, but glibc gives 33 a handler of its
    /// own when the first thread starts, and a handler turns into the default at exec: the app
    /// must find the "ignore" it would have inherited without meshwait.
    pub fn restore_ignored(&self) {
        for n in 1..=LAST {
            if self.ignored.contains(n) {
                let _ = kernel_signals::set_ignored(n, true);
            }
        }
    }
}

/// Blocks every signal and records what was there before. Call first thing in `main`.
///
/// The C library's own numbers (32-34) are blocked and recorded like the rest: see
/// `kernel_signals`.
pub fn block_all() -> io::Result<Inherited> {
    let mask = Mask::everything().install()?;
    let mut ignored = Mask::empty();
    for n in 1..=LAST {
        if kernel_signals::is_ignored(n) {
            ignored.add(n);
        }
    }
    // An ignored SIGCHLD makes the kernel discard our children's exit statuses (no zombies, so
    // waitpid finds nothing and the app's exit code would be lost). meshwait takes the default
    // for itself; the app still gets "ignored" back through `restore_ignored`.
    if ignored.contains(libc::SIGCHLD) {
        kernel_signals::set_ignored(libc::SIGCHLD, false)?;
    }
    settle_thread_setup();
    Ok(Inherited { mask, ignored })
}

/// Lets the C library make its one-time preparation for threads now, then blocks everything
/// again.
///
/// The first thread a process creates makes the C library unblock its own numbers in the
/// creating thread (musl 33 and 34, as it would on installing the first signal handler, which
/// meshwait never does; glibc 32 and 33, and 33 gets a handler of glibc's), and every later
/// thread starts with the library's cancellation signal unblocked (musl 33, glibc 32). A
/// process-directed signal goes to any thread that does not block it. meshwait may start one
/// thread, for a name lookup (tokio's blocking pool), long after start-up, and from then on a
/// `kill -34` would end a musl meshwait. A thread created and joined here moves that first
/// unblocking to start-up, microseconds before the mask is taken back; the runtime's threads
/// re-block at their start (`block_in_new_thread`).
///
/// Blocking the C library's numbers in every thread is safe because meshwait never uses what
/// they serve. musl: 32 carries timer_create(SIGEV_THREAD) expirations, 33 pthread_cancel, 34
/// __synccall, by which setuid, setgid, setgroups and (without prlimit) setrlimit reach every
/// thread, waiting for each to take the signal: it would wait for ever on a thread that blocks
/// it. glibc: 32 pthread_cancel, 33 the same set*id broadcast. meshwait calls none of these, and
/// its only other thread runs getaddrinfo, which needs none of them either.
fn settle_thread_setup() {
    // On failure (a pids limit reached) the preparation happens at the first lookup thread
    // instead: the only loss is 32-34's protection from then on.
    let _ = std::thread::Builder::new()
        .stack_size(16 * 1024)
        .spawn(|| {})
        .map(std::thread::JoinHandle::join);
    let _ = Mask::everything().install();
}

/// For the runtime's `on_thread_start`: re-blocks what the C library unblocked for a new thread
/// (see `settle_thread_setup`). A 32 (glibc) or 33 (musl) that arrives in the microseconds
/// before this runs still meets the default action: the remaining exposure, only while a lookup
/// thread starts.
pub fn block_in_new_thread() {
    let _ = Mask::everything().install();
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

/// The blocked signals, readable asynchronously (signalfd) or by blocking (rt_sigtimedwait without
/// a timeout: sigwaitinfo).
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
        let owned: OwnedFd = mask.signalfd(libc::SFD_NONBLOCK | libc::SFD_CLOEXEC)?;
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

    fn poll_next(&self, cx: &mut task::Context<'_>) -> Poll<io::Result<Received>> {
        loop {
            let mut guard = match self.fd.poll_read_ready(cx) {
                Poll::Ready(Ok(guard)) => guard,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            match guard.try_io(|fd| read_one(fd.get_ref().as_raw_fd(), &self.context)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    /// Blocks the thread until the next signal: one system call between the kernel and the
    /// caller, with no event loop in between. For phases where a signal is the only event.
    pub fn wait(&mut self) -> io::Result<Received> {
        let mut info = MaybeUninit::<libc::siginfo_t>::uninit();
        loop {
            match self.mask.take(Some(&mut info), None) {
                Ok(signo) => {
                    // SAFETY: filled by a successful rt_sigtimedwait.
                    let info = unsafe { info.assume_init() };
                    // SAFETY: si_pid is meaningful for every signal this process can be sent;
                    // for kernel-generated ones it reads 0.
                    let sender = unsafe { info.si_pid() } as u32;
                    return Received::new(signo, sender, info.si_code, &self.context);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Signals {
    /// Runs `work` to its end unless a stop request (`Received::asks_to_stop`) comes first, which
    /// is then the `Err`. Every signal is blocked, so without this a TERM would wait for the work.
    /// Any other signal goes to `aside` (a SIGCHLD to reap, a line in the log), except those
    /// meshwait raised itself, and the work goes on: it has an end of its own. So does a failed read, after which the signals are left
    /// alone until the work ends: a read that keeps failing must not spin the loop.
    pub async fn unless_stopped<F: Future>(
        &mut self,
        work: F,
        aside: &mut dyn FnMut(io::Result<Received>),
    ) -> Result<F::Output, Received> {
        let mut work = std::pin::pin!(work);
        let mut listening = true;
        // Polled by hand rather than with select!: the generic part stays a few instructions
        // per kind of work, and the signal side is compiled once.
        std::future::poll_fn(|cx| {
            if let Poll::Ready(stop) = self.poll_stop(cx, &mut listening, aside) {
                return Poll::Ready(Err(stop));
            }
            work.as_mut().poll(cx).map(Ok)
        })
        .await
    }

    /// The next signal, or `None` once `until` has ended with none.
    pub async fn next_before(
        &mut self,
        until: impl Future<Output = ()>,
    ) -> io::Result<Option<Received>> {
        let mut until = std::pin::pin!(until);
        // By hand, signals first, as in `unless_stopped`.
        std::future::poll_fn(|cx| {
            if let Poll::Ready(received) = self.poll_next(cx) {
                return Poll::Ready(received.map(Some));
            }
            until.as_mut().poll(cx).map(|()| Ok(None))
        })
        .await
    }

    /// Signals first: work that is ready at the same moment as a stop request must not hide it.
    fn poll_stop(
        &self,
        cx: &mut task::Context<'_>,
        listening: &mut bool,
        aside: &mut dyn FnMut(io::Result<Received>),
    ) -> Poll<Received> {
        while *listening {
            match self.poll_next(cx) {
                Poll::Ready(Ok(r)) if r.asks_to_stop() => return Poll::Ready(r),
                // meshwait's own (a SIGPIPE from a log line to a closed pipe) are no news to
                // anyone; handed on, a log line about one would raise the next.
                Poll::Ready(Ok(r)) if r.self_inflicted() => {}
                Poll::Ready(Ok(r)) => aside(Ok(r)),
                Poll::Ready(Err(e)) => {
                    aside(Err(e));
                    *listening = false;
                }
                Poll::Pending => break,
            }
        }
        Poll::Pending
    }
}

impl Signals {
    /// As `wait`, for at most `limit`: `None` when no signal came.
    pub fn wait_at_most(&mut self, limit: std::time::Duration) -> io::Result<Option<Received>> {
        let timeout = libc::timespec {
            tv_sec: limit.as_secs() as _,
            tv_nsec: limit.subsec_nanos() as _,
        };
        let mut info = MaybeUninit::<libc::siginfo_t>::uninit();
        match self.mask.take(Some(&mut info), Some(&timeout)) {
            Ok(signo) => {
                // SAFETY: filled by a successful rt_sigtimedwait.
                let info = unsafe { info.assume_init() };
                // SAFETY: as in `wait`.
                let sender = unsafe { info.si_pid() } as u32;
                Received::new(signo, sender, info.si_code, &self.context).map(Some)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            // Interrupted (a stop and continue of meshwait): the caller just looks again.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
            Err(e) => Err(e),
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

/// Removes a pending instance of `signal` (blocked, so it waits in the queue) without acting on it.
pub fn discard_pending(signal: Signal) {
    let mut only = Mask::empty();
    only.add(signal.raw());
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // EAGAIN (none pending) is fine.
    let _ = only.take(None, Some(&zero));
}

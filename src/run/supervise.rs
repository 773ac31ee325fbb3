//! While the app runs: forward what meshwait receives, reap what exits, return when the app ends.

use std::time::Duration;

use nix::unistd::Pid;
use tokio::runtime::Runtime;

use crate::run::AppPlan;
use crate::run::incoming_signals::{Received, Signals};
use crate::run::job_control;
use crate::run::launch::Launched;
use crate::run::reaper::{self, Ended};
use crate::run::signal::{self, Signal};
use crate::run::stop_hold::{Hold, Step};

/// The `component` of this module's log lines. Users filter logs by it, so it is fixed here,
/// not taken from the module path, which moves when the code is reorganised.
const LOG: &str = "supervise";

/// Runs until the app's exit status is known.
///
/// Deliberately synchronous: while the app runs, a signal is the only event there is, and waiting
/// for it in sigwaitinfo gives the shortest path from the kernel to the forwarding kill(2) (no
/// epoll wake-up, no task scheduling) and no timer at all, so an idle meshwait never wakes. Only
/// while a stop signal is held does it wait on the event loop, which has the timers for looking
/// at the sockets and the connection for reading the sidecar's counts; and only while the app
/// is stopped for a terminal meshwait cannot give it yet does it look again on a timer
/// (`job_control::Follower`).
pub fn supervise(app: Launched, plan: &AppPlan, signals: &mut Signals, runtime: &Runtime) -> Ended {
    // The app may have exited before we got here; its SIGCHLD is then already pending, but a
    // look now costs one syscall and removes any doubt.
    let mut forwarder = Forwarder {
        app,
        plan,
        group_left: false,
        follower: job_control::Follower::default(),
    };
    if let Some(ended) = finished(app, &mut forwarder.follower) {
        return ended;
    }
    // The stop signal being held while connections drain; only the first one is held.
    let mut hold: Option<Hold> = None;
    let mut held_once = false;
    loop {
        let next = match hold.as_mut().map(|held| (held.step(), held)) {
            // A timer only while the app waits, stopped, for a terminal meshwait may yet get.
            None => match forwarder.follower.recheck_in() {
                None => signals.wait().map(Some),
                Some(after) => signals.wait_at_most(after),
            },
            Some((Step::WaitUntil(at), held)) => runtime.block_on(held.wait(at, signals)),
            Some((Step::Release, _)) => {
                if let Some(done) = hold.take() {
                    forwarder.forward(&done.trigger);
                }
                continue;
            }
        };
        match next {
            // The hold's timer (step it again), or the recheck of a parked app.
            Ok(None) => forwarder.follower.recheck(app),
            // Not logged: logging into a closed stderr is what raises these, so a log line
            // here would raise the next one, forever.
            Ok(Some(r)) if r.self_inflicted() => {}
            // Never forwarded: it reports our own children, and the app has its own.
            Ok(Some(r)) if r.signal.raw() == libc::SIGCHLD => {
                if let Some(ended) = finished(app, &mut forwarder.follower) {
                    if hold.is_some() {
                        tracing::info!(target: LOG, "the app exited while its connections drained");
                    }
                    return ended;
                }
            }
            Ok(Some(r)) => {
                if r.signal == Signal::CONT {
                    // Continued from outside: whatever parked the app is someone else's now.
                    forwarder.follower.continued();
                }
                match &hold {
                    Some(held) if plan.hold.skips(&r) => {
                        held.skip(&r);
                        let trigger = held.trigger;
                        hold = None;
                        forwarder.forward(&trigger);
                        // A SIGINT (or another drain signal) is the app's to see too, as it would
                        // be without meshwait; a repeated trigger is the one just delivered.
                        if r.signal != trigger.signal {
                            forwarder.forward(&r);
                        }
                    }
                    None if !held_once && plan.hold.holds(&r) => {
                        held_once = true;
                        hold = Some(Hold::begin(r, &plan.hold));
                    }
                    _ => forwarder.forward(&r),
                }
            }
            Err(e) => {
                // Should never happen (sigwaitinfo only fails on a bad mask); pause so a
                // persistent fault cannot become a busy loop, and keep reaping so the app's end
                // is still noticed.
                tracing::error!(target: LOG, error = %e, "waiting for signals failed");
                std::thread::sleep(Duration::from_millis(100));
                if let Some(ended) = finished(app, &mut forwarder.follower) {
                    return ended;
                }
            }
        }
    }
}

/// Reaps what has exited; `Some` once the app's end is known, or known to be unknowable.
fn finished(app: Launched, follower: &mut job_control::Follower) -> Option<Ended> {
    let reaped = reaper::reap(Some(app.pid), app.on_terminal);
    match (reaped.main, reaped.main_stopped) {
        (Some(ended), _) => Some(ended),
        // No children at all, so the app is gone, and its status went elsewhere: waiting on
        // would mean waiting forever.
        (None, _) if reaped.none_left => Some(Ended::Lost),
        // Stopped, and (checked above) not dead by now.
        (None, Some(stop)) => {
            follower.follow_stop(app, stop);
            None
        }
        (None, None) => None,
    }
}

/// Delivers what meshwait receives to the app (or its group).
struct Forwarder<'a> {
    app: Launched,
    plan: &'a AppPlan,
    /// The app has left the process group it was started in (said once).
    group_left: bool,
    /// The app's stops (an interactive terminal), which decide whether what is forwarded must
    /// also wake it.
    follower: job_control::Follower,
}

impl Forwarder<'_> {
    fn forward(&mut self, received: &Received) {
        let (app, plan) = (self.app, self.plan);
        let signal = if received.signal == Signal::TERM {
            plan.stop_signal
        } else {
            received.signal
        };
        let target = if plan.process_group && !self.group_left {
            Pid::from_raw(-app.group.as_raw())
        } else {
            app.pid
        };
        let mut result = signal::send(target, signal);
        // ESRCH for the group while the app itself is there (unreaped, or it would not be
        // supervised still): the app moved itself into another group (setpgid), leaving its
        // own empty. The signal is then the app's alone; losing it silently would leave a pod
        // stop waiting for SIGKILL.
        if result == Err(nix::errno::Errno::ESRCH) && target != app.pid {
            result = signal::send(app.pid, signal);
            if result.is_ok() {
                self.group_left = true;
                tracing::warn!(target: LOG,
                    group = app.group.as_raw(),
                    pid = app.pid.as_raw(),
                    "the app left its process group; --process-group now reaches the app alone"
                );
            }
        }
        match result {
            Ok(_) if signal != received.signal => tracing::info!(target: LOG,
                received = %received.signal,
                signal = %signal,
                pid = app.pid.as_raw(),
                "forwarding stop signal"
            ),
            Ok(_) => {
                tracing::debug!(target: LOG, signal = %signal, sender = received.sender, pid = target.as_raw(), "forwarded");
            }
            // The app has exited but is not reaped yet; its SIGCHLD is on the way.
            Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => {
                tracing::warn!(target: LOG, signal = %signal, error = %e, "could not forward signal");
            }
        }
        if result.is_ok() {
            self.follower.forwarded(app, signal);
        }
    }
}

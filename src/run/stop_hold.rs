//! Holding the stop signal while the app finishes its work: after SIGTERM the app keeps serving
//! through `--shutdown-delay` (endpoints are being withdrawn), then until no connection of its
//! own has work in flight, bounded by `--drain-timeout`. Only then does it get the stop signal.

use std::io;
use std::time::{Duration, Instant};

use crate::proxy::sidecar_view::Verdict;
use crate::run::drain::{Drainer, Poll, SocketPlan, Until};
use crate::run::incoming_signals::{Received, Signals};
use crate::run::signal::Signal;

/// The `component` of this module's log lines. Users filter logs by it, so it is fixed here,
/// not taken from the module path, which moves when the code is reorganised.
const LOG: &str = "stop_hold";

/// What the hold does; part of the run plan.
#[derive(Clone, Debug)]
pub struct HoldPlan {
    pub shutdown_delay: Duration,
    /// Zero: no draining.
    pub drain_timeout: Duration,
    /// Signals that start the hold (SIGTERM by default).
    pub triggers: Vec<Signal>,
    pub sockets: SocketPlan,
}

impl HoldPlan {
    /// Whether `received` should be held rather than forwarded at once.
    pub fn holds(&self, received: &Received) -> bool {
        let enabled = !self.shutdown_delay.is_zero() || !self.drain_timeout.is_zero();
        enabled && !received.self_inflicted() && self.triggers.contains(&received.signal)
    }

    /// A second stop request while holding: give up waiting.
    pub fn skips(&self, received: &Received) -> bool {
        !received.self_inflicted()
            && (received.signal == Signal::TERM
                || received.signal == Signal::INT
                || self.triggers.contains(&received.signal))
    }
}

/// What a hold does next.
pub enum Step {
    /// Nothing to do before this instant (or a signal).
    WaitUntil(Instant),
    /// Time to pass the held signal on.
    Release,
}

/// One hold, from the signal that started it to its release.
pub struct Hold {
    pub trigger: Received,
    started: Instant,
    delay_ends: Instant,
    drain_timeout: Duration,
    sockets: SocketPlan,
    drainer: Option<Drainer>,
    /// When the drainer wants to look again; a signal forwarded meanwhile must not cause a scan.
    next_poll: Option<Instant>,
}

impl Hold {
    pub fn begin(trigger: Received, plan: &HoldPlan) -> Hold {
        let started = Instant::now();
        tracing::info!(target: LOG,
            signal = %trigger.signal,
            shutdown_delay_ms = plan.shutdown_delay.as_millis() as u64,
            drain_timeout_ms = plan.drain_timeout.as_millis() as u64,
            "received {}: holding it until the app's connections are idle",
            trigger.signal
        );
        Hold {
            trigger,
            started,
            delay_ends: started + plan.shutdown_delay,
            drain_timeout: plan.drain_timeout,
            sockets: plan.sockets.clone(),
            drainer: None,
            next_poll: None,
        }
    }

    pub fn step(&mut self) -> Step {
        let now = Instant::now();
        if now < self.delay_ends {
            return Step::WaitUntil(self.delay_ends);
        }
        if self.drain_timeout.is_zero() {
            tracing::info!(target: LOG, "shutdown delay over; passing {} on", self.trigger.signal);
            return Step::Release;
        }
        if let Some(at) = self.next_poll.filter(|at| now < *at) {
            return Step::WaitUntil(at);
        }
        let drainer = self.drainer.get_or_insert_with(|| {
            Drainer::new(self.sockets.clone(), Until::Idle, self.drain_timeout)
        });
        match drainer.poll() {
            Poll::Busy(at) => {
                self.next_poll = Some(at);
                Step::WaitUntil(at)
            }
            Poll::Drained => {
                let sidecar = match drainer.last().sidecar {
                    Some(Verdict::Unreadable(_)) => " (Envoy's counts unreadable: by the sockets)",
                    Some(_) => " and no request in flight in the sidecar",
                    None => "",
                };
                tracing::info!(target: LOG,
                    held_ms = self.started.elapsed().as_millis() as u64,
                    "connections idle{sidecar}; passing {} on",
                    self.trigger.signal
                );
                Step::Release
            }
            Poll::TimedOut(census) => {
                tracing::warn!(target: LOG,
                    held_ms = self.started.elapsed().as_millis() as u64,
                    blocking = census.blocking,
                    held_by = census.held_by(),
                    "drain timeout: still busy: {census}; passing {} on anyway",
                    self.trigger.signal
                );
                Step::Release
            }
        }
    }

    /// Waits for a signal or `at`, or for a read of the sidecar to finish (`Ok(None)` for both:
    /// step again).
    pub async fn wait(
        &mut self,
        at: Instant,
        signals: &mut Signals,
    ) -> io::Result<Option<Received>> {
        match self.drainer.as_mut() {
            Some(drainer) => {
                let woke = drainer.wait(at, signals).await;
                // Woken before its time with no signal: a sidecar read ended, and its answer is
                // worth a look now, not at the next scheduled poll.
                if matches!(woke, Ok(None)) && Instant::now() < at {
                    self.next_poll = None;
                }
                woke
            }
            None => {
                signals
                    .next_before(tokio::time::sleep_until(at.into()))
                    .await
            }
        }
    }

    /// A second stop request arrived: release now.
    pub fn skip(&self, by: &Received) {
        tracing::info!(target: LOG,
            signal = %by.signal,
            held_ms = self.started.elapsed().as_millis() as u64,
            "received {} while holding: passing {} on now",
            by.signal,
            self.trigger.signal
        );
    }
}

//! `meshwait drain`, for preStop hooks: wait until the app's connections drain, then exit.

use std::io::Write;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use crate::exit_code;
use crate::run::drain::{Drainer, Poll, SocketPlan, Until};
use crate::run::incoming_signals::{Received, Signals};

/// The `component` of this module's log lines. Users filter logs by it, so it is fixed here,
/// not taken from the module path, which moves when the code is reorganised.
const LOG: &str = "lifecycle";

/// `meshwait drain`: polls until drained (0), the timeout (1), or a stop signal (128+N).
pub fn drain_until(
    sockets: SocketPlan,
    until: Until,
    timeout: Duration,
    signals: &mut Signals,
    runtime: &Runtime,
) -> i32 {
    let started = Instant::now();
    let mut drainer = Drainer::new(sockets, until, timeout);
    loop {
        match drainer.poll() {
            Poll::Drained => {
                let waited = started.elapsed();
                tracing::info!(target: LOG,
                    waited_ms = waited.as_millis() as u64,
                    "drained: {}",
                    drainer.last()
                );
                let _ = writeln!(
                    std::io::stdout(),
                    "drained after {}",
                    humantime::format_duration(round_ms(waited))
                );
                return exit_code::OK;
            }
            Poll::TimedOut(census) => {
                tracing::warn!(target: LOG,
                    blocking = census.blocking,
                    held_by = census.held_by(),
                    "drain timeout: still blocking: {census}"
                );
                let _ = writeln!(
                    std::io::stdout(),
                    "not drained after {}: {census}",
                    humantime::format_duration(round_ms(started.elapsed()))
                );
                return exit_code::STILL_BUSY;
            }
            // Any other signal leaves the schedule alone: a rescan per signal would let a
            // flood of them (a chatty SIGUSR1, SIGWINCH from a resized terminal) turn the drain
            // into a busy loop of socket scans.
            Poll::Busy(at) => {
                let pause = drainer.pause(at);
                let mut ignore = |received: std::io::Result<Received>| match received {
                    Ok(r) => {
                        tracing::debug!(target: LOG, signal = %r.signal, "ignored while draining");
                    }
                    Err(e) => {
                        tracing::error!(target: LOG, error = %e, "waiting for signals failed");
                    }
                };
                if let Err(stop) = runtime.block_on(signals.unless_stopped(pause, &mut ignore)) {
                    return exit_code::for_signal(stop.signal.raw());
                }
            }
        }
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

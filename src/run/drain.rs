//! Waiting for the app's connections to drain: one census per poll, what still blocks, and when
//! to look again. Shared by the SIGTERM hold in `run` and by `meshwait drain`.
//!
//! Two views are read side by side: the kernel's sockets (every connection of the app's, through
//! the sidecar or not) and, where the sidecar is Envoy, its own count of the requests it forwards
//! (`sidecar_view`), which sees what the sockets cannot: requests on a multiplexed HTTP/2
//! connection and streams between their messages. The app is busy while either says so.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use crate::proxy::sidecar_view::{SidecarPlan, SidecarView, Verdict};
use crate::run::incoming_signals::{Received, Signals};
use crate::sockets::connection_class::{
    Busy, Class, Classifier, Direction, ProxyRules, scan_classified,
};
use crate::sockets::{Socket, SocketView, Which};

/// The `component` of this module's log lines. Users filter logs by it, so it is fixed here,
/// not taken from the module path, which moves when the code is reorganised.
const LOG: &str = "drain";

/// Longest gap between two looks at the sockets.
const POLL: Duration = Duration::from_millis(100);
/// Shortest gap, for when a quiet window is about to end.
const MIN_POLL: Duration = Duration::from_millis(5);
/// How often a long wait says what still blocks it.
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// Distinct ports a census names; the rest are counted together.
const PORTS_NAMED: usize = 6;

/// What "drained" means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// No connection of the app's has work in flight (idle keep-alive connections may stay).
    Idle,
    /// The app holds no connection at all.
    Closed,
    /// The app listens on no port any more: it has exited or closed its listeners.
    AppExit,
}

/// How the proxy's sockets are recognised and what counts as recent.
#[derive(Clone, Debug)]
pub struct SocketPlan {
    pub rules: ProxyRules,
    pub quiet: Duration,
    pub source: crate::sockets::Source,
    /// Envoy's request counts, read beside the sockets (`None`: the sockets alone).
    pub sidecar: Option<SidecarPlan>,
}

/// One look at the namespace's sockets.
#[derive(Clone, Debug, Default)]
pub struct Census {
    /// Sockets that keep the drain from ending.
    pub blocking: u32,
    /// The longest-standing blocker: how long, and why.
    pub oldest: Option<(u32, Option<Busy>)>,
    ports: Vec<(Direction, u16, u32)>,
    other_ports: u32,
    /// When connections busy only through the quiet window turn idle, in ms from now.
    pub quiet_ends_ms: Option<u32>,
    /// The last scan failed: nothing is known, so the drain goes on.
    pub unreadable: bool,
    /// What the sidecar said at the time, when it is read.
    pub sidecar: Option<Verdict>,
}

impl Census {
    /// Nothing blocks in either view.
    pub fn drained(&self) -> bool {
        self.sockets_drained() && !self.sidecar.as_ref().is_some_and(Verdict::holds)
    }

    fn sockets_drained(&self) -> bool {
        self.blocking == 0
    }

    /// Which view keeps the drain going, for the log.
    pub fn held_by(&self) -> &'static str {
        let sidecar = self.sidecar.as_ref().is_some_and(Verdict::holds);
        match (self.sockets_drained(), sidecar) {
            (false, true) => "sockets and sidecar",
            (false, false) => "sockets",
            (true, true) => "sidecar",
            (true, false) => "none",
        }
    }

    fn fmt_sockets(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unreadable {
            return f.write_str("the sockets could not be read");
        }
        if self.sockets_drained() {
            return f.write_str("nothing blocks");
        }
        write!(f, "{} (", self.blocking)?;
        for (i, (direction, port, n)) in self.ports.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} :{port}", direction.name())?;
            if *n > 1 {
                write!(f, " ×{n}")?;
            }
        }
        if self.other_ports > 0 {
            write!(f, ", {} on other ports", self.other_ports)?;
        }
        f.write_str(")")?;
        if let Some((age, busy)) = self.oldest {
            match busy {
                Some(why) if age > 0 => write!(f, "; oldest {} ({why})", ms(age))?,
                Some(why) => write!(f, "; {why}")?,
                None => {}
            }
        }
        Ok(())
    }

    /// Counts `socket` when it blocks `until` (not `AppExit`, which goes by listeners alone).
    pub fn take(
        &mut self,
        socket: &Socket,
        class: Class,
        classifier: &Classifier<'_>,
        until: Until,
    ) {
        let Class::App {
            direction,
            busy,
            age_ms,
        } = class
        else {
            return;
        };
        if busy.is_none() && until == Until::Idle {
            return;
        }
        let port = match direction {
            Direction::Inbound => socket.local.port(),
            Direction::Outbound => socket.remote.port(),
        };
        self.count(direction, port, age_ms, busy);
        if busy == Some(Busy::Recent) {
            let left = classifier.quiet_left_ms(socket).unwrap_or(0);
            self.quiet_ends_ms = Some(self.quiet_ends_ms.map_or(left, |q| q.max(left)));
        }
    }

    fn count(&mut self, direction: Direction, port: u16, age_ms: u32, busy: Option<Busy>) {
        self.blocking += 1;
        if self.oldest.is_none_or(|(age, _)| age_ms > age) {
            self.oldest = Some((age_ms, busy));
        }
        let known = self.ports.len();
        match self
            .ports
            .iter_mut()
            .find(|(d, p, _)| *d == direction && *p == port)
        {
            Some((_, _, n)) => *n += 1,
            None if known < PORTS_NAMED => self.ports.push((direction, port, 1)),
            None => self.other_ports += 1,
        }
    }
}

impl fmt::Display for Census {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(sidecar) = &self.sidecar else {
            return self.fmt_sockets(f);
        };
        f.write_str("sidecar: ")?;
        fmt::Display::fmt(sidecar, f)?;
        f.write_str("; sockets: ")?;
        self.fmt_sockets(f)
    }
}

fn ms(value: u32) -> String {
    if value >= 1000 {
        format!("{:.1}s", f64::from(value) / 1000.0)
    } else {
        format!("{value}ms")
    }
}

/// Counts what blocks `until` right now.
pub fn census(view: &mut SocketView, plan: &SocketPlan, until: Until) -> io::Result<Census> {
    let mut census = Census::default();
    if until == Until::AppExit {
        view.scan(Which::Listening, &mut |s: &Socket| {
            if !plan.rules.owns(s) {
                census.count(Direction::Inbound, s.local.port(), 0, None);
            }
        })?;
        return Ok(census);
    }
    scan_classified(
        view,
        &plan.rules,
        plan.quiet,
        &mut |s, class, classifier| {
            census.take(s, class, classifier, until);
        },
    )?;
    Ok(census)
}

/// The outcome of one poll.
pub enum Poll {
    Drained,
    /// Not yet; look again at this instant.
    Busy(Instant),
    /// The deadline passed with this still blocking.
    TimedOut(Census),
}

/// Polls a census until drained or the deadline, saying now and then what it waits for.
pub struct Drainer {
    view: SocketView,
    plan: SocketPlan,
    until: Until,
    deadline: Instant,
    last: Census,
    last_report: Option<Instant>,
    last_error: Option<Instant>,
    /// Only for `Until::Idle`: the other goals are about sockets, not requests.
    sidecar: Option<SidecarView>,
}

impl Drainer {
    pub fn new(plan: SocketPlan, until: Until, limit: Duration) -> Drainer {
        let sidecar = match until {
            Until::Idle => plan.sidecar.clone().map(SidecarView::new),
            Until::Closed | Until::AppExit => None,
        };
        Drainer {
            view: SocketView::new(plan.source),
            plan,
            until,
            deadline: Instant::now() + limit,
            last: Census::default(),
            last_report: None,
            last_error: None,
            sidecar,
        }
    }

    /// Waits for a signal, the instant `at`, or the end of a sidecar read under way (after which
    /// the caller polls again at once). Cancel-safe.
    pub async fn wait(
        &mut self,
        at: Instant,
        signals: &mut Signals,
    ) -> io::Result<Option<Received>> {
        signals.next_before(self.pause(at)).await
    }

    /// Waits for the instant `at`, or the end of a sidecar read under way. Cancel-safe.
    pub async fn pause(&mut self, at: Instant) {
        let mut read = std::pin::pin!(async {
            match self.sidecar.as_mut() {
                Some(sidecar) => sidecar.settle().await,
                None => std::future::pending().await,
            }
        });
        let mut sleep = std::pin::pin!(tokio::time::sleep_until(at.into()));
        // Polled by hand: select! would add its branch bookkeeping for two futures that both
        // simply end the pause.
        std::future::poll_fn(|cx| {
            if sleep.as_mut().poll(cx).is_ready() || read.as_mut().poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
            std::task::Poll::Pending
        })
        .await;
    }

    pub fn poll(&mut self) -> Poll {
        let started = Instant::now();
        let result = census(&mut self.view, &self.plan, self.until);
        let now = Instant::now();
        tracing::trace!(target: LOG,
            took_us = (now - started).as_micros() as u64,
            "scanned the sockets"
        );
        let sidecar = self.sidecar.as_mut().map(|s| {
            s.start_if_due(now);
            s.verdict().clone()
        });
        // Without one completed read nothing is known of the requests the sockets cannot see;
        // the read is bounded, so waiting for it past the deadline is bounded too.
        let first_read = self
            .sidecar
            .as_ref()
            .is_some_and(SidecarView::first_read_pending);
        let result = result.map(|mut c| {
            c.sidecar = sidecar.clone();
            c
        });
        match result {
            Ok(c) if c.drained() => {
                self.last = c;
                return Poll::Drained;
            }
            Ok(c) => self.last = c,
            // A failed scan proves nothing: keep waiting, bounded by the deadline.
            Err(e) => {
                if self.last_error.is_none_or(|t| now - t >= REPORT_EVERY) {
                    tracing::warn!(target: LOG, error = %e, "cannot read the sockets");
                    self.last_error = Some(now);
                }
                self.last = Census {
                    blocking: 1,
                    unreadable: true,
                    sidecar,
                    ..Census::default()
                };
            }
        }
        if now >= self.deadline && !first_read {
            return Poll::TimedOut(std::mem::take(&mut self.last));
        }
        if !first_read && self.last_report.is_none_or(|t| now - t >= REPORT_EVERY) {
            self.last_report = Some(now);
            let what = match self.until {
                Until::Idle => "busy connections",
                Until::Closed => "open connections",
                Until::AppExit => "listening sockets",
            };
            let left = self.deadline.saturating_duration_since(now);
            tracing::info!(target: LOG,
                blocking = self.last.blocking,
                held_by = self.last.held_by(),
                left_ms = left.as_millis() as u64,
                "waiting for {what}: {}",
                self.last
            );
        }
        // Every POLL, but never more than half the time scanning: a scan of a huge /proc table
        // on a loaded node may take longer than the period.
        let mut next = (started + POLL).max(now + (now - started));
        if let Some(quiet) = self.last.quiet_ends_ms {
            // A few ms late on purpose: tcp_info's times tick in jiffies (up to 4 ms).
            let ends = Duration::from_millis(u64::from(quiet)) + Duration::from_millis(4);
            next = next.min(now + ends.max(MIN_POLL));
        }
        if let Some(read) = self.sidecar.as_ref().and_then(SidecarView::next_read) {
            next = next.min(read.max(now));
        }
        if first_read {
            // The read's own end wakes the wait; the deadline does not cut it short.
            return Poll::Busy(next);
        }
        Poll::Busy(next.min(self.deadline))
    }

    /// The census of the last poll (what `Drained` was judged on, or what still blocks).
    pub fn last(&self) -> &Census {
        &self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the drain's log line: the count, each port once with how many (`×n` only above
    /// one), the ports past the named ones summed, and the oldest blocker with its age only when
    /// it has one.
    #[test]
    fn the_census_line_names_ports_counts_and_the_oldest() {
        let mut census = Census::default();
        assert_eq!(census.to_string(), "nothing blocks");
        census.count(Direction::Inbound, 8080, 0, Some(Busy::Queued));
        assert_eq!(census.to_string(), "1 (in :8080); bytes queued");
        census.count(Direction::Inbound, 8080, 2500, Some(Busy::Request));
        census.count(Direction::Inbound, 8080, 10, Some(Busy::Recent));
        // As old as the oldest: the first one seen stays the one named.
        census.count(Direction::Inbound, 8081, 2500, Some(Busy::Queued));
        census.count(Direction::Outbound, 5432, 0, None);
        for port in 9000..9000 + PORTS_NAMED as u16 {
            census.count(Direction::Outbound, port, 0, None);
        }
        assert_eq!(
            census.to_string(),
            format!(
                "{} (in :8080 ×3, in :8081, out :5432, {}, 3 on other ports); oldest 2.5s (request awaiting its answer)",
                5 + PORTS_NAMED,
                (9000..9000 + PORTS_NAMED as u16 - 3)
                    .map(|p| format!("out :{p}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        );
        census.unreadable = true;
        assert_eq!(census.to_string(), "the sockets could not be read");
    }
}

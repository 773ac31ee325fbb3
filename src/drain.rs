//! Waiting for the app's connections to drain: one census per poll, what still blocks, and when
//! to look again. Shared by the SIGTERM hold in `run` and by `meshwait drain`.

use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use clap::ValueEnum;

use crate::connection_class::{Busy, Class, Classifier, Direction, ProxyRules};
use crate::port_set::PortSet;
use crate::sockets::{Socket, SocketView, TcpState, Which};

/// Longest gap between two looks at the sockets.
const POLL: Duration = Duration::from_millis(100);
/// Shortest gap, for when a quiet window is about to end.
const MIN_POLL: Duration = Duration::from_millis(5);
/// How often a long wait says what still blocks it.
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// Distinct ports a census names; the rest are counted together.
const PORTS_NAMED: usize = 6;

/// What "drained" means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
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
}

impl Census {
    pub fn drained(&self) -> bool {
        self.blocking == 0
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
        if self.unreadable {
            return f.write_str("the sockets could not be read");
        }
        if self.drained() {
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
    // One pass: listeners arrive first and teach the classifier the app's ports.
    let mut classifier = Classifier::new(&plan.rules, PortSet::new(), plan.quiet);
    view.scan(Which::ListenersThenConnections, &mut |s: &Socket| {
        if s.state == TcpState::Listen {
            if !plan.rules.owns(s) {
                classifier.learn_app_port(s.local.port());
            }
            return;
        }
        let Class::App {
            direction,
            busy,
            age_ms,
        } = classifier.classify(s)
        else {
            return;
        };
        if busy.is_none() && until == Until::Idle {
            return;
        }
        let port = match direction {
            Direction::Inbound => s.local.port(),
            Direction::Outbound => s.remote.port(),
        };
        census.count(direction, port, age_ms, busy);
        if busy == Some(Busy::Recent) {
            let left = classifier.quiet_left_ms(s).unwrap_or(0);
            census.quiet_ends_ms = Some(census.quiet_ends_ms.map_or(left, |q| q.max(left)));
        }
    })?;
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
}

impl Drainer {
    pub fn new(plan: SocketPlan, until: Until, limit: Duration) -> Drainer {
        Drainer {
            view: SocketView::new(plan.source),
            plan,
            until,
            deadline: Instant::now() + limit,
            last: Census::default(),
            last_report: None,
            last_error: None,
        }
    }

    pub fn poll(&mut self) -> Poll {
        let started = Instant::now();
        let result = census(&mut self.view, &self.plan, self.until);
        let now = Instant::now();
        match result {
            Ok(c) if c.drained() => return Poll::Drained,
            Ok(c) => self.last = c,
            // A failed scan proves nothing: keep waiting, bounded by the deadline.
            Err(e) => {
                if self.last_error.is_none_or(|t| now - t >= REPORT_EVERY) {
                    tracing::warn!(error = %e, "cannot read the sockets");
                    self.last_error = Some(now);
                }
                self.last = Census {
                    blocking: 1,
                    unreadable: true,
                    ..Census::default()
                };
            }
        }
        if now >= self.deadline {
            return Poll::TimedOut(std::mem::take(&mut self.last));
        }
        if self.last_report.is_none_or(|t| now - t >= REPORT_EVERY) {
            self.last_report = Some(now);
            let what = match self.until {
                Until::Idle => "busy connections",
                Until::Closed => "open connections",
                Until::AppExit => "listening sockets",
            };
            let left = self.deadline - now;
            tracing::info!(
                blocking = self.last.blocking,
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
        Poll::Busy(next.min(self.deadline))
    }
}

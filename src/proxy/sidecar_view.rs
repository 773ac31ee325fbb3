//! The drain as the sidecar sees it: Envoy's live request counts (`/clusters`), read beside the
//! kernel's sockets while a stop signal is held.
//!
//! The sockets cannot see requests on a multiplexed HTTP/2 connection (gRPC) or a streaming answer
//! between its chunks; Envoy counts every request and stream it forwards. So while the admin
//! answers, an inbound request there keeps the app busy. An outbound one (the app's own call)
//! keeps it busy for at most `--outbound-hold` from when meshwait first saw it: long enough for
//! a call the app is waiting on, not for a watch or a streaming pull that never ends. When the
//! admin cannot be read (no Envoy, Envoy gone mid-drain, a hung or strange answer) the drain goes
//! by the sockets alone, which is what it did before, and says so once.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use crate::proxy::envoy_admin::page;
use crate::proxy::envoy_clusters::{ClusterRules, Flow, Parser, Reading};
use crate::proxy::sidecar_http::{self, Answer, NoAnswer};
use crate::proxy::sidecar_url::SidecarUrl;
use crate::untrusted_text;

/// The `component` of this module's log lines. Users filter logs by it, so it is fixed here,
/// not taken from the module path, which moves when the code is reorganised.
const LOG: &str = "sidecar_view";

/// Never read more often than this.
const MIN_GAP: Duration = Duration::from_millis(100);
/// Between reads, wait this many times as long as the last read took, so that answering meshwait
/// costs Envoy's main thread at most about a tenth of its time, however large the mesh (5,000
/// clusters: an 11 MB page, 86 ms of Envoy's main thread per read).
const LOAD_FACTOR: u32 = 9;
/// But never longer than this: the end of the last request is seen at most this (plus a read)
/// late, even from an admin that takes a second to answer.
const MAX_GAP: Duration = Duration::from_secs(2);
/// After a failed read, try again this much later (Envoy may be restarting).
const RETRY: Duration = Duration::from_secs(1);
/// A `/clusters` page larger than this is not one (5,000 clusters are about 9 MB).
const PAGE_MAX: u64 = 256 * 1024 * 1024;
/// Requests per cluster whose age is tracked one by one; more are as young as the youngest.
const AGES_MAX: usize = 256;
/// Envoy's count of upgraded (WebSocket, CONNECT) downstream connections, per HTTP listener.
const UPGRADES_PATH: &str = "/stats?filter=downstream_cx_upgrades_active%24";
/// How often that count is asked for while inbound requests are active: it only names what
/// holds the drain in the log, and a regex over a big Envoy's stats is not free.
const UPGRADES_EVERY: Duration = Duration::from_secs(5);

/// Where and how the sidecar's counts are read; part of the socket plan.
#[derive(Clone, Debug)]
pub struct SidecarPlan {
    /// Envoy's admin (`--admin-url`).
    pub admin: SidecarUrl,
    /// Bound on one read (`--request-timeout`).
    pub bound: Duration,
    /// How long an outbound request keeps the app busy (`--outbound-hold`).
    pub outbound_hold: Duration,
    pub rules: ClusterRules,
}

/// One look at the sidecar.
#[derive(Clone, Debug)]
pub struct Sight {
    pub reading: Reading,
    /// Upgraded connections on the inbound listeners, where Envoy's stats show them (a plain
    /// Envoy does; Istio's default stats matcher drops the stat). `None` also when not asked.
    pub upgraded: Option<u32>,
    pub took: Duration,
}

/// Reads `/clusters` once, and (with `upgrades`) for inbound requests the upgraded-connection
/// count, within `plan.bound` each.
pub async fn look(plan: &SidecarPlan, upgrades: bool) -> Result<Sight, NoAnswer> {
    let started = Instant::now();
    let url = page(&plan.admin, "/clusters").map_err(NoAnswer::Failed)?;
    let mut parser = Parser::new(plan.rules.clone());
    let fetched =
        sidecar_http::stream(&url, plan.bound, PAGE_MAX, &mut |chunk| parser.feed(chunk)).await;
    let answer = fetched?;
    if !answer.is_success() {
        let status = answer.status;
        return Err(NoAnswer::Failed(format!(
            "/clusters answered HTTP {status}"
        )));
    }
    let reading = parser
        .finish()
        .map_err(|e| NoAnswer::Failed(e.to_string()))?;
    let upgraded = if upgrades && reading.total(Flow::Inbound) > 0 {
        upgraded(plan).await
    } else {
        None
    };
    let took = started.elapsed();
    Ok(Sight {
        reading,
        upgraded,
        took,
    })
}

async fn upgraded(plan: &SidecarPlan) -> Option<u32> {
    let url = page(&plan.admin, UPGRADES_PATH).ok()?;
    let Ok(Answer { status: 200, body }) = sidecar_http::fetch(&url, plan.bound).await else {
        return None;
    };
    upgrades_in(&String::from_utf8_lossy(&body))
}

/// The upgraded connections on the inbound HTTP listeners, summed, from the lines of
/// `/stats?filter=downstream_cx_upgrades_active$`; `None` when no such listener is listed.
fn upgrades_in(text: &str) -> Option<u32> {
    let mut found = None;
    for line in text.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        // Istio names its inbound HTTP listeners' stats `http.inbound_0.0.0.0_8080.`.
        if name.trim().starts_with("http.inbound") {
            if let Ok(n) = value.trim().parse::<u32>() {
                found = Some(found.unwrap_or(0) + n);
            }
        }
    }
    found
}

/// What the sidecar says about the app, for one poll of a drain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The first read is still under way.
    Reading,
    Seen(Seen),
    /// The admin cannot be read: the sockets decide alone.
    Unreadable(String),
}

impl Verdict {
    /// Whether the sidecar keeps the drain going.
    pub fn holds(&self) -> bool {
        match self {
            Verdict::Reading => true,
            Verdict::Seen(seen) => seen.inbound > 0 || seen.outbound_held > 0,
            Verdict::Unreadable(_) => false,
        }
    }
}

/// The requests in flight, judged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub inbound: u32,
    pub upgraded: Option<u32>,
    /// Outbound requests younger than `--outbound-hold`: the app may be waiting on them.
    pub outbound_held: u32,
    /// Outbound requests older than that: taken for watches and streaming pulls.
    pub outbound_aged: u32,
    pub outbound_hold: Duration,
    /// The cluster with the most inbound requests, or else outbound: what to name in the log.
    pub busiest: Option<(String, Flow, u32)>,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Reading => f.write_str("reading Envoy's /clusters"),
            Verdict::Unreadable(why) => write!(f, "Envoy's admin unreadable ({why})"),
            Verdict::Seen(seen) => seen.fmt(f),
        }
    }
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if self.inbound > 0 {
            let mut text = format!("{} inbound {}", self.inbound, requests(self.inbound));
            if let Some((cluster, Flow::Inbound, n)) = &self.busiest {
                // The proxy names its clusters, and `meshwait drain` prints this on stdout.
                let cluster = untrusted_text::piece(cluster);
                if *n == self.inbound {
                    text.push_str(&format!(" active on {cluster}"));
                } else {
                    text.push_str(&format!(" active ({n} on {cluster})"));
                }
            } else {
                text.push_str(" active");
            }
            match self.upgraded {
                Some(n) if n > 0 => text.push_str(&format!(
                    ", {n} of them upgraded (WebSocket or CONNECT: held until closed or the drain timeout)"
                )),
                _ => {}
            }
            parts.push(text);
        }
        if self.outbound_held > 0 {
            let mut text = format!(
                "{} outbound {} active",
                self.outbound_held,
                requests(self.outbound_held)
            );
            if let (0, Some((cluster, Flow::Outbound, _))) = (self.inbound, &self.busiest) {
                text.push_str(&format!(" (on {})", untrusted_text::piece(cluster)));
            }
            text.push_str(&format!(
                ", held for up to {} each",
                humantime::format_duration(self.outbound_hold)
            ));
            parts.push(text);
        }
        if self.outbound_aged > 0 {
            parts.push(format!(
                "{} outbound {} older than --outbound-hold not waited for (watches, streams)",
                self.outbound_aged,
                requests(self.outbound_aged)
            ));
        }
        if parts.is_empty() {
            return f.write_str("no request active");
        }
        f.write_str(&parts.join("; "))
    }
}

fn requests(n: u32) -> &'static str {
    if n == 1 { "request" } else { "requests" }
}

type Pending = Pin<Box<dyn Future<Output = Result<Sight, NoAnswer>>>>;

/// The sidecar's side of one drain: reads on a cadence, the latest verdict, outbound ages.
pub struct SidecarView {
    plan: SidecarPlan,
    pending: Option<Pending>,
    next_read: Instant,
    verdict: Verdict,
    /// Reads completed; the first failure is logged, later ones are not.
    reads: u32,
    warned: bool,
    /// When the upgraded-connection count was last asked for, and what it said.
    upgrades: Option<(Instant, Option<u32>)>,
    /// Whether the read under way asks for it.
    asking_upgrades: bool,
    /// Per outbound cluster, when each of its requests was first seen, oldest first. A count
    /// that falls is taken to have lost its youngest requests (a short call ends before the
    /// watch it sits beside), so the oldest keep their age.
    ages: Vec<(String, Vec<Instant>)>,
}

impl SidecarView {
    pub fn new(plan: SidecarPlan) -> SidecarView {
        SidecarView {
            plan,
            pending: None,
            next_read: Instant::now(),
            verdict: Verdict::Reading,
            reads: 0,
            warned: false,
            upgrades: None,
            asking_upgrades: false,
            ages: Vec::new(),
        }
    }

    /// Starts a read if one is due; the verdict stands until it completes.
    pub fn start_if_due(&mut self, now: Instant) {
        if self.pending.is_none() && now >= self.next_read {
            let plan = self.plan.clone();
            let upgrades = self
                .upgrades
                .is_none_or(|(at, _)| now - at >= UPGRADES_EVERY);
            self.asking_upgrades = upgrades;
            self.pending = Some(Box::pin(async move { look(&plan, upgrades).await }));
        }
    }

    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    /// When the next read is due (none while one is under way: its end wakes the drain).
    pub fn next_read(&self) -> Option<Instant> {
        self.pending.is_none().then_some(self.next_read)
    }

    /// Whether no read has completed yet: the drain cannot be judged without one.
    pub fn first_read_pending(&self) -> bool {
        self.reads == 0
    }

    /// Waits for the read under way, if any, and takes its result. Cancel-safe: dropping this
    /// future leaves the read where it was.
    pub async fn settle(&mut self) {
        let Some(pending) = self.pending.as_mut() else {
            return std::future::pending().await;
        };
        let result = pending.await;
        self.pending = None;
        self.take(result, Instant::now());
    }

    fn take(&mut self, result: Result<Sight, NoAnswer>, now: Instant) {
        self.reads += 1;
        match result {
            Ok(mut sight) => {
                if self.asking_upgrades && sight.reading.total(Flow::Inbound) > 0 {
                    self.upgrades = Some((now, sight.upgraded));
                } else if sight.reading.total(Flow::Inbound) == 0 {
                    self.upgrades = None;
                }
                sight.upgraded = self.upgrades.and_then(|(_, n)| n);
                if matches!(self.verdict, Verdict::Unreadable(_)) {
                    tracing::info!(target: LOG, url = %self.plan.admin, "Envoy's admin answers again: its request counts count again");
                }
                let gap = MIN_GAP
                    .saturating_sub(sight.took)
                    .max(sight.took * LOAD_FACTOR)
                    .min(MAX_GAP);
                self.next_read = now + gap;
                self.verdict = Verdict::Seen(self.judge(&sight, now));
            }
            Err(why) => {
                if !self.warned {
                    self.warned = true;
                    tracing::warn!(target: LOG,
                        url = %self.plan.admin,
                        error = %why,
                        "cannot read Envoy's request counts ({why}): the drain goes by the sockets alone"
                    );
                }
                self.next_read = now + RETRY;
                self.verdict = Verdict::Unreadable(why.to_string());
            }
        }
    }

    fn judge(&mut self, sight: &Sight, now: Instant) -> Seen {
        let reading = &sight.reading;
        let mut seen = Seen {
            inbound: reading.total(Flow::Inbound),
            upgraded: sight.upgraded,
            outbound_hold: self.plan.outbound_hold,
            ..Seen::default()
        };
        // Outbound clusters by name, and those past the named ones together under "".
        let outbound = reading
            .active
            .iter()
            .filter(|a| a.flow == Flow::Outbound)
            .map(|a| (a.cluster.as_str(), a.requests))
            .chain((reading.unnamed.1 > 0).then_some(("", reading.unnamed.1)));
        let mut ages = Vec::new();
        for (cluster, count) in outbound {
            let mut stack = match self.ages.iter().position(|(c, _)| c == cluster) {
                Some(at) => self.ages.swap_remove(at).1,
                None => Vec::new(),
            };
            let count = count as usize;
            stack.truncate(count.min(AGES_MAX));
            while stack.len() < count.min(AGES_MAX) {
                stack.push(now);
            }
            let aged = stack
                .iter()
                .filter(|&&t| now - t >= self.plan.outbound_hold)
                .count() as u32;
            seen.outbound_aged += aged;
            seen.outbound_held += count as u32 - aged;
            ages.push((cluster.to_string(), stack));
        }
        self.ages = ages;
        let busiest = |flow: Flow| {
            reading
                .active
                .iter()
                .filter(|a| a.flow == flow)
                .max_by_key(|a| a.requests)
                .map(|a| (a.cluster.clone(), a.flow, a.requests))
        };
        seen.busiest = busiest(Flow::Inbound).or_else(|| busiest(Flow::Outbound));
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::envoy_clusters::Active;
    use crate::sockets::port_set::PortSet;

    fn view(hold: Duration) -> SidecarView {
        SidecarView::new(SidecarPlan {
            admin: "http://127.0.0.1:15000".parse().unwrap(),
            bound: Duration::from_secs(1),
            outbound_hold: hold,
            rules: ClusterRules {
                proxy_ports: PortSet::new(),
                names_only: false,
            },
        })
    }

    fn sight(active: &[(&str, Flow, u32)]) -> Sight {
        Sight {
            reading: Reading {
                active: active
                    .iter()
                    .map(|&(cluster, flow, requests)| Active {
                        cluster: cluster.into(),
                        flow,
                        requests,
                    })
                    .collect(),
                ..Reading::default()
            },
            upgraded: None,
            took: Duration::from_millis(2),
        }
    }

    fn seen(v: &SidecarView) -> Seen {
        match v.verdict() {
            Verdict::Seen(seen) => seen.clone(),
            other => panic!("not seen: {other:?}"),
        }
    }

    #[test]
    fn nothing_is_known_before_the_first_read() {
        let v = view(Duration::from_secs(5));
        assert!(v.first_read_pending());
        assert!(v.verdict().holds());
    }

    #[test]
    fn inbound_requests_hold_for_as_long_as_they_last() {
        let mut v = view(Duration::from_secs(5));
        let t0 = Instant::now();
        v.take(Ok(sight(&[("inbound|8090||", Flow::Inbound, 2)])), t0);
        assert!(v.verdict().holds());
        assert_eq!(seen(&v).inbound, 2);
        // An hour later, still there: still held (only --drain-timeout ends it).
        let later = t0 + Duration::from_secs(3600);
        v.take(Ok(sight(&[("inbound|8090||", Flow::Inbound, 1)])), later);
        assert!(v.verdict().holds());
        v.take(Ok(sight(&[])), later);
        assert!(!v.verdict().holds());
        assert_eq!(v.verdict().to_string(), "no request active");
    }

    #[test]
    fn outbound_requests_hold_until_they_are_older_than_the_hold() {
        let hold = Duration::from_secs(5);
        let mut v = view(hold);
        let t0 = Instant::now();
        // A watch, open when the drain starts.
        v.take(
            Ok(sight(&[("outbound|443||pubsub", Flow::Outbound, 1)])),
            t0,
        );
        assert!(v.verdict().holds());
        let t1 = t0 + Duration::from_secs(4);
        // A call starts beside it, 4 s in.
        v.take(
            Ok(sight(&[("outbound|443||pubsub", Flow::Outbound, 2)])),
            t1,
        );
        let s = seen(&v);
        assert_eq!((s.outbound_held, s.outbound_aged), (2, 0));
        // At 6 s the watch is past the hold, the call is not.
        let t2 = t0 + Duration::from_secs(6);
        v.take(
            Ok(sight(&[("outbound|443||pubsub", Flow::Outbound, 2)])),
            t2,
        );
        let s = seen(&v);
        assert_eq!((s.outbound_held, s.outbound_aged), (1, 1));
        assert!(v.verdict().holds());
        // The call ends: the watch alone does not hold the drain.
        let t3 = t0 + Duration::from_secs(7);
        v.take(
            Ok(sight(&[("outbound|443||pubsub", Flow::Outbound, 1)])),
            t3,
        );
        let s = seen(&v);
        assert_eq!((s.outbound_held, s.outbound_aged), (0, 1));
        assert!(!v.verdict().holds());
        assert!(
            v.verdict().to_string().contains("not waited for"),
            "{}",
            v.verdict()
        );
        // A new call after that gets its own clock.
        v.take(
            Ok(sight(&[("outbound|443||pubsub", Flow::Outbound, 2)])),
            t3,
        );
        assert_eq!(seen(&v).outbound_held, 1);
    }

    #[test]
    fn a_zero_hold_never_waits_for_outbound() {
        let mut v = view(Duration::ZERO);
        v.take(
            Ok(sight(&[("PassthroughCluster", Flow::Outbound, 3)])),
            Instant::now(),
        );
        assert!(!v.verdict().holds());
        assert_eq!(seen(&v).outbound_aged, 3);
    }

    /// Guards `meshwait drain`'s stdout: the busiest cluster's name, chosen by the proxy's
    /// configuration, reached the terminal raw (a screen clear, a carriage return).
    #[test]
    fn cluster_names_in_the_verdict_are_escaped_and_capped() {
        let mut v = view(Duration::from_secs(5));
        let hostile = format!("inbound|8080||\u{1b}[2J\r\u{2028}{}", "x".repeat(2000));
        v.take(Ok(sight(&[(&hostile, Flow::Inbound, 1)])), Instant::now());
        let text = v.verdict().to_string();
        assert!(
            text.starts_with("1 inbound request active on inbound|8080||\\u{1b}[2J\\r\\u{2028}xxx"),
            "{text}"
        );
        assert!(text.len() < 300, "{text}");
    }

    /// Guards the sum over listeners (a product gave 0) and the listeners counted: only the
    /// inbound ones carry the app's clients.
    #[test]
    fn upgrades_are_summed_over_the_inbound_listeners() {
        let stats = "http.inbound_0.0.0.0_8080.downstream_cx_upgrades_active: 2
http.inbound_0.0.0.0_8090.downstream_cx_upgrades_active: 3
http.outbound_0.0.0.0_80.downstream_cx_upgrades_active: 7
http.admin.downstream_cx_upgrades_active: 1
";
        assert_eq!(upgrades_in(stats), Some(5));
        assert_eq!(
            upgrades_in("http.admin.downstream_cx_upgrades_active: 1\n"),
            None
        );
        assert_eq!(upgrades_in(""), None);
    }

    /// Guards the verdict's wording: upgraded connections are named only when there are some.
    #[test]
    fn no_upgraded_connection_is_not_mentioned() {
        let mut seen = Seen {
            inbound: 1,
            upgraded: Some(0),
            busiest: Some(("inbound|8080||".into(), Flow::Inbound, 1)),
            ..Seen::default()
        };
        assert_eq!(
            seen.to_string(),
            "1 inbound request active on inbound|8080||"
        );
        seen.upgraded = Some(1);
        assert!(seen.to_string().ends_with(
            ", 1 of them upgraded (WebSocket or CONNECT: held until closed or the drain timeout)"
        ));
    }

    /// Guards the requests past the named clusters: a big mesh's app calls more than `NAMED`
    /// services at once, and the ones counted together must hold the drain too.
    #[test]
    fn outbound_requests_past_the_named_clusters_hold_too() {
        let mut v = view(Duration::from_secs(5));
        let mut busy = sight(&[("outbound|80||a", Flow::Outbound, 1)]);
        busy.reading.unnamed = (0, 3);
        v.take(Ok(busy), Instant::now());
        let s = seen(&v);
        assert_eq!((s.outbound_held, s.outbound_aged), (4, 0));
        assert!(v.verdict().holds());
    }

    /// Guards the cadence of the upgrade count: asked with the first read that finds inbound
    /// requests, then not again for `UPGRADES_EVERY`.
    #[test]
    fn upgrades_are_asked_for_at_most_every_interval() {
        let mut v = view(Duration::from_secs(5));
        let t0 = Instant::now();
        v.start_if_due(t0);
        assert!(v.asking_upgrades, "the first read asks");
        v.pending = None;
        let mut first = sight(&[("inbound|8080||", Flow::Inbound, 1)]);
        first.upgraded = Some(1);
        v.take(Ok(first), t0);
        v.start_if_due(t0 + MAX_GAP);
        assert!(!v.asking_upgrades, "asked again too soon");
        v.pending = None;
        v.start_if_due(t0 + UPGRADES_EVERY);
        assert!(v.asking_upgrades, "not asked again after the interval");
    }

    #[test]
    fn a_failed_read_hands_the_drain_to_the_sockets_and_is_retried() {
        let mut v = view(Duration::from_secs(5));
        let t0 = Instant::now();
        v.take(Ok(sight(&[("inbound|8080||", Flow::Inbound, 1)])), t0);
        v.take(Err(NoAnswer::Refused), t0);
        assert!(!v.verdict().holds());
        assert_eq!(
            v.verdict().to_string(),
            "Envoy's admin unreadable (connection refused)"
        );
        assert_eq!(v.next_read(), Some(t0 + RETRY));
        assert!(!v.first_read_pending());
    }

    #[test]
    fn reads_are_spaced_by_their_cost() {
        let mut v = view(Duration::from_secs(5));
        let t0 = Instant::now();
        let mut quick = sight(&[]);
        quick.took = Duration::from_millis(3);
        v.take(Ok(quick), t0);
        assert_eq!(v.next_read(), Some(t0 + Duration::from_millis(97)));
        let mut slow = sight(&[]);
        slow.took = Duration::from_millis(80);
        v.take(Ok(slow), t0);
        assert_eq!(v.next_read(), Some(t0 + Duration::from_millis(720)));
        let mut hung = sight(&[]);
        hung.took = Duration::from_millis(900);
        v.take(Ok(hung), t0);
        assert_eq!(v.next_read(), Some(t0 + MAX_GAP));
    }

    #[test]
    fn the_log_names_the_cluster_and_upgrades() {
        let mut v = view(Duration::from_secs(5));
        let mut s = sight(&[
            ("inbound|8080||", Flow::Inbound, 1),
            ("outbound|80||db", Flow::Outbound, 1),
        ]);
        s.upgraded = Some(1);
        v.asking_upgrades = true;
        let t0 = Instant::now();
        v.take(Ok(s.clone()), t0);
        let text = v.verdict().to_string();
        assert!(
            text.starts_with("1 inbound request active on inbound|8080||, 1 of them upgraded"),
            "{text}"
        );
        assert!(
            text.contains("1 outbound request active, held for up to 5s each"),
            "{text}"
        );
        // Not asked again for a while: the last answer stands.
        v.asking_upgrades = false;
        s.upgraded = None;
        v.take(Ok(s), t0 + Duration::from_secs(1));
        assert!(v.verdict().to_string().contains("1 of them upgraded"));
        // No inbound request any more: forgotten.
        v.take(Ok(sight(&[])), t0 + Duration::from_secs(2));
        assert_eq!(v.upgrades, None);
    }
}

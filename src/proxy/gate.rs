//! The readiness gate: probe at a fixed rate until the proxy is ready, the time is up, or a stop
//! signal says the pod is going away.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;

use crate::proxy::diagnosis::{self, Explained, Facts};
use crate::proxy::listener_watch::{self, ListenerWatch};
use crate::proxy::mesh::Mesh;
use crate::proxy::sidecar_http::{self, Kind, Outcome};
use crate::proxy::sidecar_url::ReadyUrl;
use crate::run::incoming_signals::Signals;
use crate::run::reaper;
use crate::run::signal::Signal;

/// The `component` of this module's log lines. Users filter logs by it, so it is fixed here,
/// not taken from the module path, which moves when the code is reorganised.
const LOG: &str = "gate";

/// A repeat of the same failure is logged at most this often.
const REPEAT_EVERY: Duration = Duration::from_secs(5);
/// A change of failure class is logged at once, but not more often than this (flapping).
const CHANGE_EVERY: Duration = Duration::from_secs(1);
/// The longest look at Envoy's admin for the message on `--timeout`, on top of the timeout.
const FINAL_LOOK: Duration = Duration::from_millis(500);

/// How to wait for the proxy.
#[derive(Clone, Debug)]
pub struct GatePlan {
    pub url: ReadyUrl,
    /// Which mesh's troubleshooting hints apply.
    pub mesh: Mesh,
    /// Envoy's admin address, read to explain a 503 (`None`: never read).
    pub admin: Option<ReadyUrl>,
    /// `None` waits forever.
    pub timeout: Option<Duration>,
    pub interval: Duration,
    pub request_timeout: Duration,
    /// How long a symptom lasts before its hint is logged.
    pub hint_after: Duration,
    pub on_timeout: OnTimeout,
    /// Ports whose listeners appearing trigger a probe at once (empty: none watched).
    pub watch_ports: Vec<u16>,
}

/// What to do when `--timeout` expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnTimeout {
    /// Exit 69: the app is not started.
    Fail,
    /// Start the app anyway.
    Start,
}

/// How the gate ended.
#[derive(Debug)]
pub enum GateEnd {
    Ready,
    TimedOut {
        probes: u64,
        waited: Duration,
        /// The last answer, with Envoy's admin view when it could be read.
        last: Option<Facts>,
    },
    /// TERM, INT, HUP or QUIT arrived first: the pod is stopping, the app must not start.
    Stopped(Signal),
}

pub async fn wait_until_ready(plan: &GatePlan, signals: &mut Signals) -> GateEnd {
    let started = Instant::now();
    let deadline = plan.timeout.map(|t| started + t);
    // Fixed rate, no backoff, no burst: each probe starts `interval` after the previous one
    // started, or as soon as it finished if it took longer. (tokio's Interval is not used: it
    // keeps its old schedule after a late tick, so two starts can come closer than `interval`.)
    let mut next_start = started;
    let mut narrator = Narrator::new(plan, started);
    let mut in_flight: Option<Pin<Box<dyn Future<Output = Outcome> + '_>>> = None;
    let mut probes = 0u64;
    let mut last: Option<Outcome> = None;
    // The proxy's capture listeners: when they appear (having been absent), probe at once.
    let mut watch = ListenerWatch::new(&plan.watch_ports);
    let mut next_look = started;
    let mut seen_absent = false;
    let mut probe_again_at_once = false;
    // The facts behind a hint that is due, being completed with Envoy's admin view for a 503
    // (whose cause pilot-agent does not say).
    let mut explaining: Option<Pin<Box<dyn Future<Output = Facts> + '_>>> = None;

    loop {
        tokio::select! {
            biased;
            received = signals.next() => match received {
                Ok(r) if r.self_inflicted() => {}
                Ok(r) if r.signal.raw() == libc::SIGCHLD => {
                    // As PID 1 we inherit orphans even before the app exists (kubectl exec).
                    reaper::reap(None, false);
                }
                Ok(r) if r.asks_to_stop() => {
                    tracing::warn!(target: LOG,
                        signal = %r.signal,
                        sender = r.sender,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "stop signal while waiting for the proxy; the app will not be started"
                    );
                    return GateEnd::Stopped(r.signal);
                }
                Ok(r) => tracing::debug!(target: LOG, signal = %r.signal, sender = r.sender, "signal during the gate, no app to forward it to"),
                Err(e) => {
                    tracing::error!(target: LOG, error = %e, "reading signals failed");
                }
            },
            // Before the in-flight probe: a probe cut short by the deadline times out at the
            // same instant, and "no answer" must not replace the last real answer.
            _ = sleep_until(deadline), if deadline.is_some() => {
                let waited = started.elapsed();
                let last = match last {
                    Some(outcome) => {
                        let limit = plan.request_timeout.min(FINAL_LOOK);
                        Some(Facts::gather(outcome, plan.admin.as_ref(), limit).await)
                    }
                    None => None,
                };
                return GateEnd::TimedOut { probes, waited, last };
            },
            facts = async {
                match explaining.as_mut() {
                    Some(gathering) => gathering.await,
                    None => std::future::pending().await,
                }
            }, if explaining.is_some() => {
                explaining = None;
                narrator.hint(&facts, probes);
            },
            outcome = async {
                match in_flight.as_mut() {
                    Some(probe) => probe.await,
                    None => std::future::pending().await,
                }
            }, if in_flight.is_some() => {
                in_flight = None;
                if outcome.is_ready() {
                    let waited = started.elapsed();
                    narrator.ready(&outcome, probes, waited);
                    return GateEnd::Ready;
                }
                narrator.not_ready(&outcome, probes);
                if narrator.hint_due(&outcome) {
                    if explaining.is_none() {
                        let gathering =
                            Facts::gather(outcome.clone(), plan.admin.as_ref(), plan.request_timeout);
                        explaining = Some(Box::pin(gathering));
                    } else {
                        // One admin read at a time; this hint goes out on the answer alone.
                        narrator.hint(&Facts::probe(outcome.clone()), probes);
                    }
                }
                last = Some(outcome);
                if probe_again_at_once {
                    // The listeners appeared while this probe was out: it may have been answered
                    // before the proxy was ready.
                    probe_again_at_once = false;
                    next_start = Instant::now();
                }
            },
            _ = tokio::time::sleep_until(next_start), if in_flight.is_none() => {
                let now = Instant::now();
                next_start = now + plan.interval;
                probes += 1;
                let limit = match deadline {
                    Some(d) => plan.request_timeout.min(d.saturating_duration_since(now)),
                    None => plan.request_timeout,
                };
                in_flight = Some(Box::pin(sidecar_http::probe(&plan.url, limit.max(Duration::from_millis(1)))));
            },
            _ = tokio::time::sleep_until(next_look), if watch.is_some() => {
                next_look = Instant::now() + listener_watch::EVERY;
                match watch.as_mut().map(ListenerWatch::listening) {
                    Some(Ok(false)) => seen_absent = true,
                    Some(Ok(true)) => {
                        // One trigger only; already listening at the start means the first probe
                        // covered it.
                        watch = None;
                        if seen_absent {
                            tracing::debug!(target: LOG,
                                elapsed_ms = started.elapsed().as_millis() as u64,
                                "the proxy started listening: probing now"
                            );
                            if in_flight.is_some() {
                                probe_again_at_once = true;
                            } else {
                                next_start = Instant::now();
                            }
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!(target: LOG, error = %e, "cannot watch the proxy's listeners; probing on schedule only");
                        watch = None;
                    }
                    None => {}
                }
            },
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Decides which probe results are worth a log line, so a long wait says why without flooding.
struct Narrator<'a> {
    plan: &'a GatePlan,
    started: Instant,
    last_line: Option<(Instant, Kind)>,
    /// The current symptom (the hint the answer alone points at) and since when it holds.
    symptom: Option<(&'static str, Instant)>,
    /// Hints already given: each is given once per wait.
    hinted: Vec<&'static str>,
}

impl<'a> Narrator<'a> {
    fn new(plan: &'a GatePlan, started: Instant) -> Self {
        Narrator {
            plan,
            started,
            last_line: None,
            symptom: None,
            hinted: Vec::new(),
        }
    }

    /// Whether `outcome`'s symptom has lasted `--hint-after` without its hint having been given.
    /// Says yes once per symptom: the caller gives the hint (after reading Envoy's admin, which
    /// may name a more precise one).
    fn hint_due(&mut self, outcome: &Outcome) -> bool {
        let now = Instant::now();
        let Some(hint) = diagnosis::diagnose(self.plan.mesh, &Facts::probe(outcome.clone())) else {
            self.symptom = None;
            return false;
        };
        let since = match self.symptom {
            Some((id, since)) if id == hint.id => since,
            _ => now,
        };
        self.symptom = Some((hint.id, since));
        if now - since < self.plan.hint_after || self.hinted.contains(&hint.id) {
            return false;
        }
        self.hinted.push(hint.id);
        true
    }

    fn hint(&mut self, facts: &Facts, attempt: u64) {
        let Some(hint) = diagnosis::diagnose(self.plan.mesh, facts) else {
            return;
        };
        if hint.id != self.symptom.map_or("", |(id, _)| id) && self.hinted.contains(&hint.id) {
            return;
        }
        self.hinted.push(hint.id);
        let elapsed = Duration::from_millis(self.elapsed_ms());
        tracing::warn!(target: LOG,
            hint = hint.id,
            url = %self.plan.url,
            attempt,
            elapsed_ms = self.elapsed_ms(),
            "not ready after {}: {}",
            humantime::format_duration(elapsed),
            Explained { hint, facts }
        );
    }

    fn not_ready(&mut self, outcome: &Outcome, attempt: u64) {
        let now = Instant::now();
        let due = match self.last_line {
            None => true,
            Some((at, kind)) => {
                let since = now - at;
                since >= REPEAT_EVERY || (kind != outcome.kind() && since >= CHANGE_EVERY)
            }
        };
        if due {
            self.last_line = Some((now, outcome.kind()));
            match outcome {
                Outcome::NotReady { status, .. } => tracing::info!(target: LOG,
                    url = %self.plan.url,
                    status,
                    attempt,
                    elapsed_ms = self.elapsed_ms(),
                    "waiting for the proxy: {outcome}"
                ),
                _ => tracing::info!(target: LOG,
                    url = %self.plan.url,
                    attempt,
                    elapsed_ms = self.elapsed_ms(),
                    "waiting for the proxy: {outcome}"
                ),
            }
        }
    }

    fn ready(&self, outcome: &Outcome, probes: u64, waited: Duration) {
        tracing::info!(target: LOG,
            url = %self.plan.url,
            probes,
            elapsed_ms = waited.as_millis() as u64,
            "proxy ready ({outcome})"
        );
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// The final word on a timeout: what was tried, for how long, the last answer, and the likely
/// cause with the next check when the hint table has one. Returns the hint's id too, for the log.
pub fn describe_timeout(
    plan: &GatePlan,
    probes: u64,
    waited: Duration,
    last: Option<&Facts>,
) -> (String, Option<&'static str>) {
    let waited = humantime::format_duration(Duration::from_millis(waited.as_millis() as u64));
    let mut text = format!(
        "the proxy was not ready after {waited}: {probes} probes of {} every {} (each bounded by {}); ",
        plan.url,
        humantime::format_duration(plan.interval),
        humantime::format_duration(plan.request_timeout),
    );
    let Some(facts) = last else {
        text.push_str("no probe completed");
        return (text, None);
    };
    text.push_str(&format!("last answer: {}", facts.outcome));
    if let Some(Ok(view)) = &facts.admin {
        text.push_str(&format!("; Envoy's admin: {view}"));
    }
    let hint = diagnosis::diagnose(plan.mesh, facts);
    if let Some(hint) = hint {
        text.push_str(&format!("; likely cause: {}", Explained { hint, facts }));
    }
    (text, hint.map(|h| h.id))
}

//! What the gate says while it waits: a line when a failure is new or has lasted, a hint once
//! its symptom has lasted `--hint-after`, and the line that ends the wait.

use std::time::Duration;

use tokio::time::Instant;

use crate::proxy::diagnosis::{self, Explained, Facts, Hint};
use crate::proxy::gate::GatePlan;
use crate::proxy::sidecar_http::{Kind, Outcome};

/// The `component` of this module's log lines: the gate's, which users filter by.
const LOG: &str = "gate";

/// A repeat of the same failure is logged at most this often.
const REPEAT_EVERY: Duration = Duration::from_secs(5);
/// A change of failure class is logged at once, but not more often than this (flapping).
const CHANGE_EVERY: Duration = Duration::from_secs(1);

/// Decides which probe results are worth a log line, so a long wait says why without flooding.
pub struct Narrator<'a> {
    plan: &'a GatePlan,
    started: Instant,
    last_line: Option<(Instant, Kind)>,
    /// The current symptom (the hint the answer alone points at) and since when it holds.
    symptom: Option<(&'static str, Instant)>,
    /// Hints already given: each is given once per wait.
    hinted: Vec<&'static str>,
}

impl<'a> Narrator<'a> {
    pub fn new(plan: &'a GatePlan, started: Instant) -> Self {
        Narrator {
            plan,
            started,
            last_line: None,
            symptom: None,
            hinted: Vec::new(),
        }
    }

    /// Whether `outcome`'s symptom has lasted `--hint-after` by `now` without its hint having
    /// been given. Says yes once per symptom: the caller gives the hint (after reading Envoy's
    /// admin, which may name a more precise one).
    pub fn hint_due(&mut self, outcome: &Outcome, now: Instant) -> bool {
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

    pub fn hint(&mut self, facts: &Facts, attempt: u64) {
        let Some(hint) = self.hint_to_give(facts) else {
            return;
        };
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

    /// The hint `facts` point at, unless it was given already. The current symptom's own hint
    /// was marked given by `hint_due`, which is what asked for it, so it always goes out.
    fn hint_to_give(&mut self, facts: &Facts) -> Option<&'static Hint> {
        let hint = diagnosis::diagnose(self.plan.mesh, facts)?;
        if hint.id != self.symptom.map_or("", |(id, _)| id) && self.hinted.contains(&hint.id) {
            return None;
        }
        self.hinted.push(hint.id);
        Some(hint)
    }

    /// `outcome`, answer to probe `attempt` at `now`, when a line is due.
    pub fn not_ready(&mut self, outcome: &Outcome, attempt: u64, now: Instant) {
        if !self.line_due(outcome.kind(), now) {
            return;
        }
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

    /// Whether a failure of class `kind` at `now` gets a line; if so, it counts as the last one.
    fn line_due(&mut self, kind: Kind, now: Instant) -> bool {
        let due = match self.last_line {
            None => true,
            Some((at, last)) => {
                let since = now - at;
                since >= REPEAT_EVERY || (kind != last && since >= CHANGE_EVERY)
            }
        };
        if due {
            self.last_line = Some((now, kind));
        }
        due
    }

    pub fn ready(&self, outcome: &Outcome, probes: u64, waited: Duration) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::gate::OnTimeout;
    use crate::proxy::mesh::Mesh;
    use crate::proxy::sidecar_http::NoAnswer;

    const HINT_AFTER: Duration = Duration::from_secs(10);

    fn plan() -> GatePlan {
        GatePlan {
            url: "http://localhost:15020/healthz/ready".parse().unwrap(),
            mesh: Mesh::Istio,
            admin: None,
            timeout: None,
            interval: Duration::from_millis(50),
            request_timeout: Duration::from_secs(1),
            hint_after: HINT_AFTER,
            on_timeout: OnTimeout::Fail,
            watch_ports: Vec::new(),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn unavailable() -> Outcome {
        Outcome::NotReady {
            status: 503,
            body: String::new(),
        }
    }

    #[test]
    fn the_first_failure_gets_a_line_and_a_repeat_waits_for_repeat_every() {
        let plan = plan();
        let t0 = Instant::now();
        let mut narrator = Narrator::new(&plan, t0);
        assert!(narrator.line_due(Kind::Refused, t0));
        assert!(!narrator.line_due(Kind::Refused, t0 + REPEAT_EVERY - ms(1)));
        assert!(narrator.line_due(Kind::Refused, t0 + REPEAT_EVERY));
        // Counted from the last line, not from the first.
        assert!(!narrator.line_due(Kind::Refused, t0 + REPEAT_EVERY * 2 - ms(1)));
    }

    #[test]
    fn a_change_of_class_gets_a_line_after_change_every_not_before() {
        let plan = plan();
        let t0 = Instant::now();
        let mut narrator = Narrator::new(&plan, t0);
        assert!(narrator.line_due(Kind::Refused, t0));
        assert!(!narrator.line_due(Kind::NotReady(503), t0 + CHANGE_EVERY - ms(1)));
        assert!(narrator.line_due(Kind::NotReady(503), t0 + CHANGE_EVERY));
        // Another status is another class.
        assert!(narrator.line_due(Kind::NotReady(500), t0 + CHANGE_EVERY * 2));
    }

    #[test]
    fn a_hint_is_due_once_its_symptom_has_lasted_hint_after_and_only_once() {
        let plan = plan();
        let t0 = Instant::now();
        let mut narrator = Narrator::new(&plan, t0);
        assert!(!narrator.hint_due(&Outcome::REFUSED, t0));
        assert!(!narrator.hint_due(&Outcome::REFUSED, t0 + HINT_AFTER - ms(1)));
        assert!(narrator.hint_due(&Outcome::REFUSED, t0 + HINT_AFTER));
        assert!(!narrator.hint_due(&Outcome::REFUSED, t0 + HINT_AFTER * 3));
    }

    #[test]
    fn a_new_symptom_or_an_answer_without_a_hint_starts_the_clock_again() {
        let plan = plan();
        let t0 = Instant::now();
        let mut narrator = Narrator::new(&plan, t0);
        assert!(!narrator.hint_due(&Outcome::REFUSED, t0));
        let t1 = t0 + ms(2000);
        assert!(!narrator.hint_due(&Outcome::NoAnswer(NoAnswer::TimedOut), t1));
        assert!(!narrator.hint_due(
            &Outcome::NoAnswer(NoAnswer::TimedOut),
            t1 + HINT_AFTER - ms(1)
        ));
        assert!(narrator.hint_due(&Outcome::NoAnswer(NoAnswer::TimedOut), t1 + HINT_AFTER));

        let t2 = t1 + HINT_AFTER + ms(1);
        assert!(!narrator.hint_due(&Outcome::REFUSED, t2));
        let no_hint = Outcome::NoAnswer(NoAnswer::Failed("connection reset".into()));
        assert!(diagnosis::diagnose(Mesh::Istio, &Facts::probe(no_hint.clone())).is_none());
        assert!(!narrator.hint_due(&no_hint, t2 + ms(1)));
        let t3 = t2 + ms(2);
        assert!(!narrator.hint_due(&Outcome::REFUSED, t3));
        assert!(!narrator.hint_due(&Outcome::REFUSED, t2 + HINT_AFTER));
        assert!(narrator.hint_due(&Outcome::REFUSED, t3 + HINT_AFTER));
    }

    #[test]
    fn the_due_hint_goes_out_and_a_more_precise_one_from_the_admin_only_once() {
        let plan = plan();
        let t0 = Instant::now();
        let mut narrator = Narrator::new(&plan, t0);
        assert!(!narrator.hint_due(&unavailable(), t0));
        assert!(narrator.hint_due(&unavailable(), t0 + HINT_AFTER));
        let alone = Facts::probe(unavailable());
        assert_eq!(
            narrator.hint_to_give(&alone).map(|h| h.id),
            Some("istio-not-ready")
        );

        let admin_refused = Facts {
            admin: Some(Err(NoAnswer::Refused)),
            ..Facts::probe(unavailable())
        };
        let given = narrator.hint_to_give(&admin_refused).map(|h| h.id);
        assert_eq!(given, Some("envoy-not-running"));
        assert_eq!(narrator.hint_to_give(&admin_refused).map(|h| h.id), None);
        // Nor does the symptom's own hint come again once a different symptom holds.
        assert!(!narrator.hint_due(&Outcome::REFUSED, t0 + HINT_AFTER + ms(1)));
        assert_eq!(narrator.hint_to_give(&alone).map(|h| h.id), None);
    }
}

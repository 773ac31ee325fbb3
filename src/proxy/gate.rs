//! The readiness gate: probe at a fixed rate until the proxy is ready, the time is up, or a stop
//! signal says the pod is going away.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep, sleep_until};

use crate::proxy::diagnosis::{self, Explained, Facts};
use crate::proxy::listener_trigger::ListenerTrigger;
use crate::proxy::listener_watch::ListenerWatch;
use crate::proxy::mesh::Mesh;
use crate::proxy::narrator::Narrator;
use crate::proxy::probe_schedule::ProbeSchedule;
use crate::proxy::sidecar_http::{self, Outcome};
use crate::proxy::sidecar_url::SidecarUrl;
use crate::run::incoming_signals::{Received, Signals};
use crate::run::reaper;
use crate::run::signal::Signal;

/// The `component` of this module's log lines. Users filter logs by it, so it is fixed here,
/// not taken from the module path, which moves when the code is reorganised.
const LOG: &str = "gate";

/// The longest look at Envoy's admin for the message on `--timeout`, on top of the timeout.
const FINAL_LOOK: Duration = Duration::from_millis(500);

/// How to wait for the proxy.
#[derive(Clone, Debug)]
pub struct GatePlan {
    pub url: SidecarUrl,
    /// Which mesh's troubleshooting hints apply.
    pub mesh: Mesh,
    /// Envoy's admin address, read to explain a 503 (`None`: never read).
    pub admin: Option<SidecarUrl>,
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
    let mut gate = Gate::new(plan, started);
    loop {
        let event = match signals.unless_stopped(gate.next_event(), &mut aside).await {
            Ok(event) => event,
            Err(stop) => {
                tracing::warn!(target: LOG,
                    signal = %stop.signal,
                    sender = stop.sender,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "stop signal while waiting for the proxy; the app will not be started"
                );
                return GateEnd::Stopped(stop.signal);
            }
        };
        match event {
            Event::Deadline => return gate.timed_out().await,
            Event::Explained(facts) => gate.narrator.hint(&facts, gate.schedule.probes()),
            Event::Answered(outcome) => {
                if outcome.is_ready() {
                    return gate.ready(&outcome);
                }
                gate.not_ready(outcome);
            }
            Event::ProbeDue => gate.start_probe(),
            Event::LookDue => gate.look(),
        }
    }
}

/// The signals that do not stop the gate.
fn aside(received: io::Result<Received>) {
    match received {
        Ok(r) if r.signal.raw() == libc::SIGCHLD => {
            // As PID 1 we inherit orphans even before the app exists (kubectl exec).
            reaper::reap(None, false);
        }
        Ok(r) => {
            tracing::debug!(target: LOG, signal = %r.signal, sender = r.sender, "signal during the gate, no app to forward it to");
        }
        Err(e) => {
            tracing::error!(target: LOG, error = %e, "reading signals failed");
        }
    }
}

/// What the gate waits for, besides signals.
enum Event {
    Deadline,
    /// Envoy's admin view behind a due hint has been read.
    Explained(Facts),
    Answered(Outcome),
    ProbeDue,
    LookDue,
}

/// What the gate keeps between events.
struct Gate<'a> {
    plan: &'a GatePlan,
    started: Instant,
    deadline: Option<Instant>,
    schedule: ProbeSchedule,
    narrator: Narrator<'a>,
    probe: Slot<'a, Outcome>,
    /// The facts behind a hint that is due, being completed with Envoy's admin view for a 503
    /// (whose cause pilot-agent does not say).
    explaining: Slot<'a, Facts>,
    trigger: ListenerTrigger,
    last: Option<Outcome>,
}

impl<'a> Gate<'a> {
    fn new(plan: &'a GatePlan, started: Instant) -> Self {
        let deadline = plan.timeout.map(|t| started + t);
        Gate {
            plan,
            started,
            deadline,
            schedule: ProbeSchedule::new(plan.interval, plan.request_timeout, deadline, started),
            narrator: Narrator::new(plan, started),
            probe: Slot::empty(),
            explaining: Slot::empty(),
            trigger: ListenerTrigger::new(ListenerWatch::new(&plan.watch_ports), started),
            last: None,
        }
    }

    /// The first event to happen; of those that are ready together, the first listed. (Polled
    /// in order by hand: a biased select! does the same in more code, and the one around this in
    /// `unless_stopped` already checks tokio's cooperative budget.)
    async fn next_event(&mut self) -> Event {
        let mut deadline = pin!(self.deadline.map(sleep_until));
        let mut due = pin!(self.schedule.due().map(sleep_until));
        let mut look = pin!(self.trigger.next_look().map(sleep_until));
        std::future::poll_fn(|cx| {
            // Before the probe: a probe cut short by the deadline times out at the same instant,
            // and "no answer" must not replace the last real answer.
            if rang(deadline.as_mut(), cx) {
                return Poll::Ready(Event::Deadline);
            }
            if let Poll::Ready(facts) = self.explaining.poll_output(cx) {
                return Poll::Ready(Event::Explained(facts));
            }
            if let Poll::Ready(outcome) = self.probe.poll_output(cx) {
                return Poll::Ready(Event::Answered(outcome));
            }
            if rang(due.as_mut(), cx) {
                return Poll::Ready(Event::ProbeDue);
            }
            if rang(look.as_mut(), cx) {
                return Poll::Ready(Event::LookDue);
            }
            Poll::Pending
        })
        .await
    }

    fn ready(&self, outcome: &Outcome) -> GateEnd {
        let waited = self.started.elapsed();
        self.narrator.ready(outcome, self.schedule.probes(), waited);
        GateEnd::Ready
    }

    fn not_ready(&mut self, outcome: Outcome) {
        let plan = self.plan;
        let probes = self.schedule.probes();
        let now = Instant::now();
        self.narrator.not_ready(&outcome, probes, now);
        if self.narrator.hint_due(&outcome, now) {
            if self.explaining.is_empty() {
                let gathering =
                    Facts::gather(outcome.clone(), plan.admin.as_ref(), plan.request_timeout);
                self.explaining.put(gathering);
            } else {
                // One admin read at a time; this hint goes out on the answer alone.
                self.narrator.hint(&Facts::probe(outcome.clone()), probes);
            }
        }
        self.last = Some(outcome);
        self.schedule.answered(now);
    }

    fn start_probe(&mut self) {
        let plan = self.plan;
        let limit = self.schedule.start(Instant::now());
        self.probe.put(sidecar_http::probe(&plan.url, limit));
    }

    fn look(&mut self) {
        let now = Instant::now();
        if self.trigger.look(now) {
            self.schedule.listeners_appeared(now);
        }
    }

    async fn timed_out(&mut self) -> GateEnd {
        let plan = self.plan;
        let waited = self.started.elapsed();
        let last = match self.last.take() {
            Some(outcome) => {
                let limit = plan.request_timeout.min(FINAL_LOOK);
                Some(Facts::gather(outcome, plan.admin.as_ref(), limit).await)
            }
            None => None,
        };
        GateEnd::TimedOut {
            probes: self.schedule.probes(),
            waited,
            last,
        }
    }
}

/// Whether the timer has gone off; never, without one.
fn rang(timer: Pin<&mut Option<Sleep>>, cx: &mut Context<'_>) -> bool {
    timer.as_pin_mut().is_some_and(|t| t.poll(cx).is_ready())
}

/// Room for one future of a kind: the probe out, the admin read behind a hint.
struct Slot<'a, T>(Option<Pin<Box<dyn Future<Output = T> + 'a>>>);

impl<'a, T> Slot<'a, T> {
    fn empty() -> Self {
        Slot(None)
    }

    fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    fn put(&mut self, future: impl Future<Output = T> + 'a) {
        self.0 = Some(Box::pin(future));
    }

    /// The future's output, which empties the slot; never, when empty.
    fn poll_output(&mut self, cx: &mut Context<'_>) -> Poll<T> {
        let Some(future) = self.0.as_mut() else {
            return Poll::Pending;
        };
        let output = std::task::ready!(future.as_mut().poll(cx));
        self.0 = None;
        Poll::Ready(output)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::sidecar_http::NoAnswer;

    fn plan(timeout: Option<Duration>) -> GatePlan {
        GatePlan {
            url: "http://localhost:15020/healthz/ready".parse().unwrap(),
            mesh: Mesh::Istio,
            admin: None,
            timeout,
            interval: Duration::from_millis(50),
            request_timeout: Duration::from_secs(1),
            hint_after: Duration::from_secs(10),
            on_timeout: OnTimeout::Fail,
            watch_ports: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_probe_answered_at_the_deadline_does_not_replace_the_last_answer() {
        let plan = plan(Some(Duration::from_millis(20)));
        let started = Instant::now();
        let mut gate = Gate::new(&plan, started);
        gate.last = Some(Outcome::REFUSED);
        gate.schedule.start(started);
        // A probe bounded by the time left: its timer and the deadline's go off together.
        let deadline = gate.deadline.unwrap();
        gate.probe.put(async move {
            tokio::time::sleep_until(deadline).await;
            Outcome::NoAnswer(NoAnswer::TimedOut)
        });
        assert!(matches!(gate.next_event().await, Event::Deadline));
        match gate.timed_out().await {
            GateEnd::TimedOut { probes, last, .. } => {
                assert_eq!(probes, 1);
                assert_eq!(last.map(|f| f.outcome), Some(Outcome::REFUSED));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn no_probe_is_due_while_one_is_out_however_long_it_takes() {
        let plan = plan(None);
        let mut gate = Gate::new(&plan, Instant::now());
        assert!(matches!(gate.next_event().await, Event::ProbeDue));
        gate.start_probe();
        let slow = plan.interval * 2;
        gate.probe.put(async move {
            tokio::time::sleep(slow).await;
            Outcome::NoAnswer(NoAnswer::TimedOut)
        });
        match gate.next_event().await {
            Event::Answered(outcome) => assert_eq!(outcome, Outcome::NoAnswer(NoAnswer::TimedOut)),
            _ => panic!("not the answer"),
        }
    }

    async fn poll_once<T>(slot: &mut Slot<'_, T>) -> Poll<T> {
        std::future::poll_fn(|cx| Poll::Ready(slot.poll_output(cx))).await
    }

    #[tokio::test]
    async fn a_slot_keeps_its_future_until_it_is_done_and_then_empties() {
        let mut slot: Slot<'_, u8> = Slot::empty();
        assert!(poll_once(&mut slot).await.is_pending());
        let done = std::rc::Rc::new(std::cell::Cell::new(false));
        let answer = done.clone();
        slot.put(std::future::poll_fn(move |_| match answer.get() {
            true => Poll::Ready(7),
            false => Poll::Pending,
        }));
        assert!(poll_once(&mut slot).await.is_pending());
        assert!(!slot.is_empty());
        done.set(true);
        assert_eq!(poll_once(&mut slot).await, Poll::Ready(7));
        assert!(slot.is_empty());
        assert!(poll_once(&mut slot).await.is_pending());
    }
}

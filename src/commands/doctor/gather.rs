//! doctor's look: everything it reads, all at once and each read bounded: the sidecar's
//! endpoints, the process table and one scan of the sockets. Nothing here passes judgement.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::commands::plan::DoctorPlan;
use crate::proxy::diagnosis::Facts;
use crate::proxy::envoy_admin::{self, AdminView};
use crate::proxy::mesh::Mesh;
use crate::proxy::sidecar_http::{self, Fetched, NoAnswer, Outcome};
use crate::proxy::sidecar_url::{Host, SidecarUrl};
use crate::proxy::sidecar_view::{self, SidecarPlan, Sight};
use crate::run::drain::{Census, Until};
use crate::run::process_table::{self, Process};
use crate::sockets::connection_class::scan_classified;
use crate::sockets::{SocketView, TcpState};

/// The longest any one request may take, whatever `--request-timeout` says: a doctor that hangs
/// is no help in a pod that is already in trouble.
const DOCTOR_REQUEST_MAX: Duration = Duration::from_secs(2);

/// Everything doctor read.
pub struct Seen {
    /// The readiness probe's answer (`None`: no readiness URL).
    pub ready: Option<Outcome>,
    /// Envoy's state and xDS counters (`None`: no admin URL).
    pub admin: Option<Result<AdminView, NoAnswer>>,
    /// Envoy's request counts (`None`: not read for this mesh).
    pub sidecar: Option<Result<Sight, NoAnswer>>,
    pub quit: QuitLook,
    pub processes: Vec<Process>,
    pub sockets: Result<SocketFacts, String>,
}

/// What asking about the quit endpoint, without quitting, found.
pub enum QuitLook {
    /// No quit URL (`--mesh none`, `--mesh ambient`).
    NoUrl,
    /// Not asked: Envoy's admin and other helpers may act on a GET.
    NotTried(SidecarUrl),
    /// pilot-agent's own endpoint, asked with a GET (which it refuses with 405 when it is there).
    Istio(SidecarUrl, Outcome),
    /// Linkerd's own endpoint: the proxy's `/env.json` says whether it is switched on.
    Linkerd {
        url: SidecarUrl,
        env: Result<(SidecarUrl, Fetched), String>,
    },
}

/// The environment variable that switches Linkerd's `/shutdown` on.
pub const LINKERD_SHUTDOWN_VAR: &str = "LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED";

/// Reads everything, the HTTP requests all at once.
pub async fn look(plan: &DoctorPlan) -> Seen {
    let limit = plan.request_timeout.min(DOCTOR_REQUEST_MAX);
    let ready = async {
        match &plan.ready {
            Some(url) => Some(sidecar_http::probe(url, limit).await),
            None => None,
        }
    };
    let admin = async {
        match &plan.admin {
            Some(url) => Some(envoy_admin::read(url, limit).await),
            None => None,
        }
    };
    let sidecar = async {
        match &plan.sockets.sidecar {
            Some(sidecar) => {
                let bounded = SidecarPlan {
                    bound: limit,
                    ..sidecar.clone()
                };
                Some(sidecar_view::look(&bounded, true).await)
            }
            None => None,
        }
    };
    let quit = quit_look(plan, limit);
    let (ready, admin, sidecar, quit) = tokio::join!(ready, admin, sidecar, quit);
    Seen {
        ready,
        admin,
        sidecar,
        quit,
        processes: process_table::all(),
        sockets: SocketFacts::read(plan),
    }
}

async fn quit_look(plan: &DoctorPlan, limit: Duration) -> QuitLook {
    let Some(url) = plan.quit.first() else {
        return QuitLook::NoUrl;
    };
    // The mesh's own endpoint, parsed as the plan parsed the URL it was given.
    let own = plan
        .mesh
        .quit_url()
        .and_then(|preset| preset.parse::<SidecarUrl>().ok())
        .is_some_and(|preset| preset == *url);
    match plan.mesh {
        Mesh::Istio if own => {
            let answer = sidecar_http::call(url, hyper::Method::GET, limit).await;
            QuitLook::Istio(url.clone(), answer)
        }
        Mesh::Linkerd if own => {
            let env = format!("http://{}/env.json?{LINKERD_SHUTDOWN_VAR}", url.authority)
                .parse::<SidecarUrl>();
            let env = match env {
                Ok(env) => {
                    let fetched = sidecar_http::fetch(&env, limit).await;
                    Ok((env, fetched))
                }
                Err(e) => Err(e),
            };
            QuitLook::Linkerd {
                url: url.clone(),
                env,
            }
        }
        _ => QuitLook::NotTried(url.clone()),
    }
}

/// What one scan of the namespace's sockets says about the proxy and the app.
#[derive(Default)]
pub struct SocketFacts {
    /// Listening addresses with the owner's UID.
    pub listening: Vec<(SocketAddr, u32)>,
    pub proxy_sockets: u32,
    pub app_listeners: Vec<u16>,
    /// What a drain would wait for now (`--until idle`).
    pub in_flight: Census,
    pub source: &'static str,
}

impl SocketFacts {
    /// One pass: the listeners, the proxy's sockets and the census a drain would take, or why
    /// the sockets could not be read.
    fn read(plan: &DoctorPlan) -> Result<SocketFacts, String> {
        let mut facts = SocketFacts::default();
        let mut view = SocketView::new(plan.sockets.source);
        let rules = &plan.sockets.rules;
        let scanned = scan_classified(
            &mut view,
            rules,
            plan.sockets.quiet,
            &mut |s, class, classifier| {
                if rules.uids.contains(&s.uid) {
                    facts.proxy_sockets += 1;
                }
                facts.in_flight.take(s, class, classifier, Until::Idle);
                if s.state != TcpState::Listen {
                    return;
                }
                let port = s.local.port();
                if !facts.listening.contains(&(s.local, s.uid)) {
                    facts.listening.push((s.local, s.uid));
                }
                if !rules.owns(s) {
                    // Kept sorted by inserting each port at its place, found by a binary search:
                    // a sort() would cost the binary kilobytes.
                    if let Err(at) = facts.app_listeners.binary_search(&port) {
                        facts.app_listeners.insert(at, port);
                    }
                }
            },
        );
        scanned.map_err(|e| format!("cannot read the sockets: {e}"))?;
        facts.source = view.source_name();
        Ok(facts)
    }

    /// ztunnel's in-pod listeners without a sidecar's status port: a pod in ambient mode.
    pub fn ambient(&self) -> bool {
        Mesh::ambient_listeners(|port| self.uid_on(port).is_some())
    }

    /// The Refused row's facts, with what the scan says about ambient mode.
    pub fn refused(&self) -> Facts {
        Facts {
            ambient: self.ambient(),
            ..Facts::probe(Outcome::REFUSED)
        }
    }

    pub fn uid_on(&self, port: u16) -> Option<u32> {
        self.listening
            .iter()
            .find(|(a, _)| a.port() == port)
            .map(|&(_, uid)| uid)
    }

    /// For a connection to `url` that was refused: what the scan saw listening on its port, when
    /// it saw anything. A hint that nothing listens would then contradict the ports line.
    pub fn refused_yet_listening(&self, url: &SidecarUrl, option: &str) -> Option<String> {
        let on_port: Vec<&(SocketAddr, u32)> = self
            .listening
            .iter()
            .filter(|(a, _)| a.port() == url.port)
            .collect();
        let &&(first, uid) = on_port.first()?;
        let listeners: Vec<String> = on_port.iter().map(|(a, _)| a.to_string()).collect();
        let listeners = listeners.join(", ");
        let targets = url.fixed_addrs().unwrap_or_default();
        let tried = match &url.host {
            Host::Name(name) => format!("the addresses {name} resolves to"),
            _ => targets
                .iter()
                .map(SocketAddr::to_string)
                .collect::<Vec<_>>()
                .join(" and "),
        };
        let covered = on_port
            .iter()
            .any(|(listener, _)| targets.iter().any(|t| takes(listener, t)));
        if covered {
            return Some(format!(
                "port {} listens ({listeners}, uid {uid}) where meshwait connects, yet {tried} \
                 refused the connection: the listener opened after the request (run doctor \
                 again), or a firewall rule rejects the connection",
                url.port
            ));
        }
        let ip = match first.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let example = SocketAddr::new(ip, url.port);
        Some(format!(
            "port {} listens on {listeners} (uid {uid}), but not on {tried}, where meshwait \
             connects: the server is bound to another address (IPv4 against IPv6, or the pod's \
             IP instead of loopback). Point {option} at an address it listens on, e.g. \
             http://{example}{}",
            url.port,
            if option == "--ready-url" {
                url.path.as_str()
            } else {
                ""
            },
        ))
    }
}

/// Whether a listener on `listener` accepts connections to `target` (same port).
fn takes(listener: &SocketAddr, target: &SocketAddr) -> bool {
    match (listener.ip(), target.ip()) {
        (l, t) if l == t => true,
        (IpAddr::V4(l), IpAddr::V4(_)) => l.is_unspecified(),
        // `[::]` also takes IPv4 unless the socket is IPv6-only, which the scan does not say.
        (IpAddr::V6(l), _) => l.is_unspecified(),
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

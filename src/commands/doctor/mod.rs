//! `meshwait doctor`: one look at a troubled pod, as a check list with evidence and hints.
//!
//! Meant for `kubectl exec POD -c APP -- meshwait doctor` (or a debug step in a Job). Every HTTP
//! request is bounded and they all run at once, so the whole look takes about `DOCTOR_REQUEST_MAX`
//! at most even when every endpoint hangs. Nothing is changed: the quit endpoint is asked with a
//! GET (which pilot-agent refuses with 405) or, for Linkerd, through the proxy's `/env.json`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::commands::logging::json_string;
use crate::commands::plan::DoctorPlan;
use crate::exit_code;
use crate::proxy::diagnosis::{self, Explained, Facts};
use crate::proxy::envoy_admin::{self, AdminView, ServerState};
use crate::proxy::envoy_clusters::Flow;
use crate::proxy::mesh::Mesh;
use crate::proxy::sidecar_http::{self, Answer, NoAnswer, Outcome};
use crate::proxy::sidecar_url::{Host, ReadyUrl};
use crate::proxy::sidecar_view::{self, SidecarPlan, Sight};
use crate::run::drain::{self, Until};
use crate::run::incoming_signals::Signals;
use crate::run::process_table::{self, Process};
use crate::sockets::{SocketView, TcpState, Which};
use crate::untrusted_text;

/// The longest any one request may take, whatever `--request-timeout` says: a doctor that hangs
/// is no help in a pod that is already in trouble.
const DOCTOR_REQUEST_MAX: Duration = Duration::from_secs(2);

/// How much of one check's evidence the text report shows: several neighbour pieces may share a
/// line, and a terminal must not be flooded by one check.
const EVIDENCE_SHOWN: usize = 600;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    Pass,
    Fail,
    /// Evidence only: neither right nor wrong by itself.
    Info,
}

impl Mark {
    fn symbol(self) -> &'static str {
        match self {
            Mark::Pass => "✓",
            Mark::Fail => "✗",
            Mark::Info => "·",
        }
    }

    fn word(self) -> &'static str {
        match self {
            Mark::Pass => "pass",
            Mark::Fail => "fail",
            Mark::Info => "info",
        }
    }
}

/// One line of the report.
#[derive(Clone, Debug)]
pub struct Check {
    pub name: &'static str,
    pub mark: Mark,
    pub evidence: String,
    /// The hint table's id, when the hint came from it.
    pub hint_id: Option<&'static str>,
    pub hint: Option<String>,
}

impl Check {
    fn new(name: &'static str, mark: Mark, evidence: impl Into<String>) -> Check {
        Check {
            name,
            mark,
            evidence: evidence.into(),
            hint_id: None,
            hint: None,
        }
    }

    fn hint(mut self, text: impl Into<String>) -> Check {
        self.hint = Some(text.into());
        self
    }

    fn explained(mut self, mesh: Mesh, facts: &Facts) -> Check {
        if let Some(hint) = diagnosis::diagnose(mesh, facts) {
            self.hint_id = Some(hint.id);
            self.hint = Some(Explained { hint, facts }.to_string());
        }
        self
    }
}

/// Runs every check and prints the report; 0 when nothing failed, 1 otherwise, 128+N on a stop
/// signal.
pub async fn examine(plan: &DoctorPlan, signals: &mut Signals) -> i32 {
    let checks = match signals.unless_stopped(gather(plan), |_| {}).await {
        Ok(checks) => checks,
        Err(stop) => return exit_code::for_signal(stop.signal.raw()),
    };
    let text = if plan.json {
        render_json(plan.mesh, &checks)
    } else {
        render_text(plan.mesh, &checks)
    };
    let _ = std::io::stdout().write_all(text.as_bytes());
    if checks.iter().any(|c| c.mark == Mark::Fail) {
        exit_code::PROBLEMS_FOUND
    } else {
        exit_code::OK
    }
}

/// Every check, in report order.
pub async fn gather(plan: &DoctorPlan) -> Vec<Check> {
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
    let quit = quit_check(plan, limit);
    let (ready, admin, sidecar, quit) = tokio::join!(ready, admin, sidecar, quit);

    let processes = process_table::all();
    let meshwaits = Meshwaits::among(&processes, std::process::id());
    let supervisor = meshwaits.here.first();
    let mut checks = vec![init_check(&processes, &meshwaits)];
    let sockets = SocketFacts::read(plan);
    checks.push(ports_check(plan, &sockets));
    checks.push(readiness_check(plan, ready, admin.clone(), &sockets));
    checks.push(envoy_check(plan, admin, &sockets));
    checks.push(proxy_sockets_check(plan, &sockets));
    checks.push(app_listeners_check(&sockets));
    checks.push(in_flight_check(plan));
    checks.push(sidecar_check(plan.mesh, sidecar));
    let quits = supervisor.and_then(|p| p.quits_proxy()).unwrap_or(false);
    checks.push(match quit {
        // Off is only a fault when the app's meshwait is going to ask.
        Check {
            mark: Mark::Fail, ..
        } if !quits => Check {
            mark: Mark::Info,
            ..quit
        },
        other => other,
    });
    checks
}

/// The meshwaits in run mode that this doctor can see, other than itself.
struct Meshwaits<'a> {
    /// In this container, lowest pid first: the first supervises the app.
    here: Vec<&'a Process>,
    /// Calling themselves meshwait in another container of a shared PID namespace, or where
    /// /proc does not say (another user): they supervise nothing here.
    elsewhere: Vec<(&'a Process, Option<String>)>,
}

impl<'a> Meshwaits<'a> {
    fn among(processes: &'a [Process], me: u32) -> Meshwaits<'a> {
        let mut found = Meshwaits {
            here: Vec::new(),
            elsewhere: Vec::new(),
        };
        for p in processes {
            if p.pid == me || !p.is_supervising_meshwait() {
                continue;
            }
            match p.shares_mounts_with_me() {
                Ok(true) => found.here.push(p),
                Ok(false) => found.elsewhere.push((p, None)),
                // A PID 1 in run mode is this container's entrypoint: a shared PID namespace's
                // PID 1 is the pod's pause process, never a meshwait.
                Err(_) if p.pid == 1 => found.here.push(p),
                Err(e) => found.elsewhere.push((p, Some(e.to_string()))),
            }
        }
        found.here.sort_by_key(|p| p.pid);
        found
    }
}

fn init_check(processes: &[Process], meshwaits: &Meshwaits) -> Check {
    let Some(first) = processes.iter().find(|p| p.pid == 1) else {
        return Check::new("init", Mark::Fail, "cannot read PID 1 in /proc");
    };
    match meshwaits.here.first() {
        Some(m) if m.pid == 1 => {
            return Check::new(
                "init",
                Mark::Pass,
                format!("PID 1 is meshwait: {}", m.command_line()),
            );
        }
        Some(m) => {
            return Check::new(
                "init",
                Mark::Pass,
                format!(
                    "meshwait is pid {} (a child subreaper): {}; PID 1 is {}",
                    m.pid,
                    m.command_line(),
                    first.command_line()
                ),
            );
        }
        None => {}
    }
    let mut evidence = format!(
        "PID 1 is {} and no meshwait supervises this container",
        first.command_line()
    );
    for (p, unreadable) in &meshwaits.elsewhere {
        let _ = match unreadable {
            None => write!(
                evidence,
                "; pid {} is a meshwait of another container",
                p.pid
            ),
            Some(why) => write!(
                evidence,
                "; pid {} calls itself meshwait, but whether it runs in this container is \
                 unreadable ({why})",
                p.pid
            ),
        };
    }
    Check::new("init", Mark::Fail, evidence).hint(
        "make meshwait the entrypoint: `ENTRYPOINT [\"meshwait\", \"--\", \"your-app\"]`. \
         Without it the app can start before the proxy is ready, SIGTERM is not held while \
         requests are in flight, and an app without signal handlers ignores SIGTERM as PID 1. \
         Run doctor in the app's container: `kubectl exec POD -c APP -- meshwait doctor`",
    )
}

/// What one scan of the namespace's sockets says about the proxy and the app.
struct SocketFacts {
    /// Listening addresses with the owner's UID.
    listening: Vec<(SocketAddr, u32)>,
    proxy_sockets: u32,
    app_listeners: Vec<u16>,
    error: Option<String>,
    source: &'static str,
}

impl SocketFacts {
    fn read(plan: &DoctorPlan) -> SocketFacts {
        let mut facts = SocketFacts {
            listening: Vec::new(),
            proxy_sockets: 0,
            app_listeners: Vec::new(),
            error: None,
            source: "",
        };
        let mut view = SocketView::new(plan.sockets.source);
        let uids = &plan.sockets.rules.uids;
        let scanned = view.scan(Which::ListenersThenConnections, &mut |s| {
            if uids.contains(&s.uid) {
                facts.proxy_sockets += 1;
            }
            if s.state != TcpState::Listen {
                return;
            }
            let port = s.local.port();
            if !facts.listening.contains(&(s.local, s.uid)) {
                facts.listening.push((s.local, s.uid));
            }
            if !plan.sockets.rules.owns(s) {
                // Kept in order as they come (no sort: its code would cost the binary kilobytes).
                if let Err(at) = facts.app_listeners.binary_search(&port) {
                    facts.app_listeners.insert(at, port);
                }
            }
        });
        facts.error = scanned
            .err()
            .map(|e| format!("cannot read the sockets: {e}"));
        facts.source = view.source_name();
        facts
    }

    /// ztunnel's in-pod listeners without a sidecar's status port: a pod in ambient mode.
    fn ambient(&self) -> bool {
        self.error.is_none() && Mesh::ambient_listeners(|port| self.uid_on(port).is_some())
    }

    /// The Refused row's facts, with what the scan says about ambient mode.
    fn refused(&self) -> Facts {
        Facts {
            ambient: self.ambient(),
            ..Facts::probe(Outcome::REFUSED)
        }
    }

    fn uid_on(&self, port: u16) -> Option<u32> {
        self.listening
            .iter()
            .find(|(a, _)| a.port() == port)
            .map(|&(_, uid)| uid)
    }

    /// For a connection to `url` that was refused: what the scan saw listening on its port, when
    /// it saw anything. A hint that nothing listens would then contradict the ports line.
    fn refused_yet_listening(&self, url: &ReadyUrl, option: &str) -> Option<String> {
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

/// The ports the proxy should listen on: the preset's and the readiness URL's (when local).
fn proxy_ports(plan: &DoctorPlan) -> Vec<(u16, &'static str)> {
    let mut wanted: Vec<(u16, &str)> = plan.mesh.listener_ports().to_vec();
    if let Some(url) = plan.ready.as_ref().filter(|u| is_local(u)) {
        if !wanted.iter().any(|(p, _)| *p == url.port) {
            wanted.insert(0, (url.port, "readiness"));
        }
    }
    wanted
}

fn ports_check(plan: &DoctorPlan, sockets: &SocketFacts) -> Check {
    const NAME: &str = "proxy ports";
    if let Some(e) = &sockets.error {
        return Check::new(NAME, Mark::Fail, e.clone());
    }
    let wanted = proxy_ports(plan);
    if wanted.is_empty() {
        return Check::new(NAME, Mark::Info, "--mesh none: no proxy ports to look for");
    }
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for (port, what) in &wanted {
        match sockets.uid_on(*port) {
            Some(uid) => up.push(format!("{port} ({what}, uid {uid})")),
            None => down.push(format!("{port} ({what})")),
        }
    }
    if down.is_empty() {
        return Check::new(NAME, Mark::Pass, format!("listening: {}", up.join(", ")));
    }
    let mut evidence = format!("absent: {}", down.join(", "));
    if !up.is_empty() {
        let _ = write!(evidence, "; listening: {}", up.join(", "));
    }
    let check = Check::new(NAME, Mark::Fail, evidence);
    if up.is_empty() || sockets.ambient() {
        // Not one of the sidecar's ports (or only ztunnel's, which share two of its numbers):
        // it is not there, which the Refused rows explain.
        return check.explained(plan.mesh, &sockets.refused());
    }
    check.hint(
        "the sidecar runs but not all of its listeners are open: Envoy opens its capture \
         listeners only once it has its configuration (see readiness and envoy below)",
    )
}

fn readiness_check(
    plan: &DoctorPlan,
    ready: Option<Outcome>,
    admin: Option<Result<AdminView, NoAnswer>>,
    sockets: &SocketFacts,
) -> Check {
    const NAME: &str = "readiness";
    let (Some(url), Some(outcome)) = (&plan.ready, ready) else {
        let why = match plan.mesh {
            Mesh::Ambient => {
                "no readiness URL (--mesh ambient: istio-cni starts the pod only once ztunnel \
                 serves it)"
            }
            _ => "no readiness URL (--mesh none without --ready-url)",
        };
        return Check::new(NAME, Mark::Info, why);
    };
    let evidence = format!("{url}: {outcome}");
    if outcome.is_ready() {
        return Check::new(NAME, Mark::Pass, evidence);
    }
    if outcome == Outcome::REFUSED {
        if let Some(hint) = sockets.refused_yet_listening(url, "--ready-url") {
            // Not "nothing listening": the scan says otherwise.
            return Check::new(NAME, Mark::Fail, format!("{url}: connection refused")).hint(hint);
        }
    }
    let ambient = outcome == Outcome::REFUSED && sockets.ambient();
    let facts = Facts {
        outcome,
        admin,
        ambient,
    };
    Check::new(NAME, Mark::Fail, evidence).explained(plan.mesh, &facts)
}

fn envoy_check(
    plan: &DoctorPlan,
    admin: Option<Result<AdminView, NoAnswer>>,
    sockets: &SocketFacts,
) -> Check {
    const NAME: &str = "envoy";
    let (Some(url), Some(admin)) = (&plan.admin, admin) else {
        let why = match plan.mesh {
            Mesh::Linkerd => "not read: Linkerd's proxy is not Envoy",
            Mesh::Ambient => "not read: in ambient mode no Envoy runs in the pod",
            _ => "not read (--admin-url none)",
        };
        return Check::new(NAME, Mark::Info, why);
    };
    let view = match admin {
        Ok(view) => view,
        Err(e) => {
            let check = Check::new(NAME, Mark::Fail, format!("{url}: {e}"));
            if e == NoAnswer::Refused {
                if let Some(hint) = sockets.refused_yet_listening(url, "--admin-url") {
                    return check.hint(hint);
                }
            }
            let sidecar_seen = sockets.proxy_sockets > 0;
            return match e {
                // Envoy's admin refusing while the sidecar's sockets are there: not started or
                // crashed. Without any of them, the sidecar itself is missing.
                NoAnswer::Refused if sidecar_seen => check.hint(
                    "Envoy is not running: `kubectl logs POD -c istio-proxy` (and --previous), \
                     and the container's status for OOMKilled or restarts",
                ),
                NoAnswer::Refused => check.explained(plan.mesh, &sockets.refused()),
                other => check.explained(plan.mesh, &Facts::probe(Outcome::NoAnswer(other))),
            };
        }
    };
    let evidence = format!("{url}: {view}");
    let healthy = view.state == Some(ServerState::Live)
        && view.counts.is_none_or(|c| c.complete() && !c.rejected());
    if healthy {
        return Check::new(NAME, Mark::Pass, evidence);
    }
    // Read as if the status port had said "not ready", so the same table explains it.
    let facts = Facts {
        outcome: Outcome::NotReady {
            status: 503,
            body: String::new(),
        },
        admin: Some(Ok(view)),
        ambient: false,
    };
    let check = Check::new(NAME, Mark::Fail, evidence).explained(plan.mesh, &facts);
    match check.hint_id {
        // That row sends the reader here; say nothing rather than point in a circle.
        Some("istio-not-ready") => Check {
            hint_id: None,
            hint: None,
            ..check
        },
        _ => check,
    }
}

fn proxy_sockets_check(plan: &DoctorPlan, sockets: &SocketFacts) -> Check {
    const NAME: &str = "proxy sockets";
    let uids = &plan.sockets.rules.uids;
    if let Some(e) = &sockets.error {
        return Check::new(NAME, Mark::Fail, e.clone());
    }
    if uids.is_empty() {
        let why = match plan.mesh {
            Mesh::Ambient => {
                "no proxy UID (--mesh ambient: ztunnel's sockets belong to root, like a root \
                 app's; they are told apart by port: its listeners 15001, 15006, 15008 and \
                 15053, and its tunnels to peers' 15008)"
            }
            _ => "no proxy UID (--mesh none)",
        };
        return Check::new(NAME, Mark::Info, why);
    }
    let uids_text = uids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if sockets.proxy_sockets > 0 {
        return Check::new(
            NAME,
            Mark::Pass,
            format!(
                "{} sockets belong to UID {uids_text} (source: {})",
                sockets.proxy_sockets, sockets.source
            ),
        );
    }
    let check = Check::new(
        NAME,
        Mark::Fail,
        format!("no socket belongs to UID {uids_text}"),
    );
    // The proxy's own ports held by some other UID: the sidecar is there under another user
    // (OpenShift, for one, assigns UIDs per namespace).
    let other = proxy_ports(plan)
        .iter()
        .find_map(|(port, _)| sockets.uid_on(*port).filter(|uid| !uids.contains(uid)));
    match other {
        Some(_) if sockets.ambient() => check.explained(plan.mesh, &sockets.refused()),
        Some(uid) => check.hint(format!(
            "the proxy's ports are held by UID {uid}: pass --proxy-uid {uid} (MESHWAIT_PROXY_UID) \
             so that drains tell its sockets from the app's"
        )),
        None => check.explained(plan.mesh, &sockets.refused()),
    }
}

fn app_listeners_check(sockets: &SocketFacts) -> Check {
    const NAME: &str = "app listeners";
    if let Some(e) = &sockets.error {
        return Check::new(NAME, Mark::Fail, e.clone());
    }
    if sockets.app_listeners.is_empty() {
        return Check::new(
            NAME,
            Mark::Info,
            "none: the app has not started (the gate may still be waiting), or it only makes \
             outbound calls",
        );
    }
    let ports: Vec<String> = sockets
        .app_listeners
        .iter()
        .map(|p| format!(":{p}"))
        .collect();
    Check::new(NAME, Mark::Pass, ports.join(", "))
}

fn in_flight_check(plan: &DoctorPlan) -> Check {
    const NAME: &str = "in flight";
    let mut view = SocketView::new(plan.sockets.source);
    match drain::census(&mut view, &plan.sockets, Until::Idle) {
        Ok(census) if census.drained() => Check::new(
            NAME,
            Mark::Info,
            "no app connection has a request in flight: a drain would end now",
        ),
        Ok(census) => Check::new(
            NAME,
            Mark::Info,
            format!("app connections with work in flight: {census}"),
        )
        .hint("`meshwait conns` lists them; a drain waits for these"),
        Err(e) => Check::new(NAME, Mark::Fail, format!("cannot read the sockets: {e}")),
    }
}

/// Envoy's own count of the requests in flight, per cluster: what the drain reads beside the
/// sockets.
fn sidecar_check(mesh: Mesh, look: Option<Result<Sight, NoAnswer>>) -> Check {
    const NAME: &str = "sidecar view";
    let sight = match look {
        None if mesh == Mesh::Ambient => {
            return Check::new(
                NAME,
                Mark::Info,
                "not read: in ambient mode no sidecar counts the pod's requests; a drain goes by the sockets alone",
            );
        }
        None if mesh == Mesh::Linkerd => {
            return Check::new(
                NAME,
                Mark::Info,
                "not read: Linkerd's proxy exports no gauge of requests in flight; a drain goes by the sockets alone",
            );
        }
        None => {
            return Check::new(
                NAME,
                Mark::Info,
                "not read (--admin-url none): a drain goes by the sockets alone",
            );
        }
        Some(Err(why)) => {
            return Check::new(
                NAME,
                Mark::Info,
                format!(
                    "Envoy's /clusters unreadable ({why}): a drain would go by the sockets alone"
                ),
            );
        }
        Some(Ok(sight)) => sight,
    };
    let r = &sight.reading;
    let mut evidence = format!("Envoy's /clusters ({} clusters): ", r.clusters);
    if r.active.is_empty() && r.unnamed == (0, 0) {
        evidence.push_str("no request in flight");
    }
    for (i, a) in r.active.iter().enumerate() {
        if i > 0 {
            evidence.push_str(", ");
        }
        let flow = if a.flow == Flow::Inbound {
            "inbound"
        } else {
            "outbound"
        };
        let cluster = untrusted_text::piece(&a.cluster);
        let _ = write!(evidence, "{} {flow} on {cluster}", a.requests);
    }
    for (flow, n) in [("inbound", r.unnamed.0), ("outbound", r.unnamed.1)] {
        if n > 0 {
            let _ = write!(evidence, ", {n} {flow} on other clusters");
        }
    }
    if let Some(n) = sight.upgraded.filter(|&n| n > 0) {
        let _ = write!(evidence, " ({n} inbound upgraded: WebSocket or CONNECT)");
    }
    Check::new(NAME, Mark::Info, evidence)
}

/// Whether the proxy can be asked to quit (for Jobs), without asking it.
async fn quit_check(plan: &DoctorPlan, limit: Duration) -> Check {
    const NAME: &str = "quit endpoint";
    let Some(url) = plan.quit.first() else {
        let why = match plan.mesh {
            Mesh::Ambient => {
                "none for --mesh ambient: ztunnel serves the whole node, nothing in the pod quits"
            }
            _ => "none for --mesh none",
        };
        return Check::new(NAME, Mark::Info, why);
    };
    let preset = |mesh: Mesh| mesh.quit_url() == Some(url.to_string().as_str());
    if plan.mesh == Mesh::Linkerd && preset(Mesh::Linkerd) {
        return linkerd_shutdown_check(url, limit).await;
    }
    if !(plan.mesh == Mesh::Istio && preset(Mesh::Istio)) {
        // Envoy's admin and other helpers may act on a GET: never try.
        return Check::new(
            NAME,
            Mark::Info,
            format!("POST {url} (not tried: it would stop the proxy)"),
        );
    }
    match sidecar_http::call(url, hyper::Method::GET, limit).await {
        // pilot-agent serves the path to POST only: 405 proves it is there.
        Outcome::NotReady { status: 405, .. } => Check::new(
            NAME,
            Mark::Pass,
            format!("POST {url} is served (a GET is refused with 405)"),
        ),
        other => Check::new(NAME, Mark::Fail, format!("GET {url}: {other}")).hint(
            "`--quit-proxy` will not be able to stop the sidecar; the Job's pod will not complete \
             until it stops",
        ),
    }
}

/// Linkerd serves `/shutdown` only with `config.linkerd.io/proxy-admin-shutdown: enabled`; the
/// proxy's `/env.json` tells whether it is, without shutting anything down.
async fn linkerd_shutdown_check(url: &ReadyUrl, limit: Duration) -> Check {
    const NAME: &str = "quit endpoint";
    const VAR: &str = "LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED";
    const ENABLE: &str = "annotate the pod template with `config.linkerd.io/proxy-admin-shutdown: \
                          enabled`, or the Job's pod will not complete";
    let env: ReadyUrl = match format!("http://{}/env.json?{VAR}", url.authority).parse() {
        Ok(env) => env,
        Err(e) => return Check::new(NAME, Mark::Info, format!("cannot ask: {e}")),
    };
    match sidecar_http::fetch(&env, limit).await {
        Ok(Answer { status: 200, body }) => {
            let body = String::from_utf8_lossy(&body);
            if body.contains("\"true\"") {
                Check::new(
                    NAME,
                    Mark::Pass,
                    format!("POST {url} is enabled ({VAR}=true)"),
                )
            } else {
                Check::new(
                    NAME,
                    Mark::Fail,
                    format!(
                        "POST {url} is off (Linkerd's default): {}",
                        untrusted_text::piece(body.trim())
                    ),
                )
                .hint(ENABLE)
            }
        }
        Ok(Answer { status, .. }) => Check::new(
            NAME,
            Mark::Info,
            format!("unknown: {env} answered HTTP {status}"),
        ),
        Err(no) => Check::new(NAME, Mark::Fail, format!("{env}: {no}")),
    }
}

fn is_local(url: &ReadyUrl) -> bool {
    match &url.host {
        Host::Localhost => true,
        Host::Ip(ip) => ip.is_loopback(),
        Host::Name(_) => false,
    }
}

fn problems(checks: &[Check]) -> usize {
    checks.iter().filter(|c| c.mark == Mark::Fail).count()
}

pub fn render_text(mesh: Mesh, checks: &[Check]) -> String {
    let mut out = format!("meshwait doctor (--mesh {})\n", mesh.name());
    // One missing sidecar fails several checks with the same hint: give it once.
    let mut shown: Vec<&str> = Vec::new();
    for c in checks {
        // Evidence quotes neighbours (another process's argv, a proxy's answer): escaped here,
        // in the one place text reaches the operator's terminal.
        let evidence = untrusted_text::shown(&c.evidence, EVIDENCE_SHOWN);
        let _ = writeln!(out, "{} {:<14} {evidence}", c.mark.symbol(), c.name);
        let Some(hint) = &c.hint else {
            continue;
        };
        let hint = untrusted_text::shown(hint, usize::MAX);
        let _ = match c.hint_id {
            Some(id) if shown.contains(&id) => writeln!(out, "  {:<14} → [{id}] as above", ""),
            Some(id) => {
                shown.push(id);
                writeln!(out, "  {:<14} → [{id}] {hint}", "")
            }
            None => writeln!(out, "  {:<14} → {hint}", ""),
        };
    }
    let _ = match problems(checks) {
        0 => writeln!(out, "nothing wrong found"),
        1 => writeln!(out, "1 problem found"),
        n => writeln!(out, "{n} problems found"),
    };
    out
}

pub fn render_json(mesh: Mesh, checks: &[Check]) -> String {
    let mut out = format!(
        "{{\"mesh\":\"{}\",\"ok\":{},\"problems\":{},\"checks\":[",
        mesh.name(),
        problems(checks) == 0,
        problems(checks)
    );
    for (i, c) in checks.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("\n{\"check\":");
        let _ = json_string(&mut out, c.name);
        let _ = write!(out, ",\"result\":\"{}\",\"evidence\":", c.mark.word());
        let _ = json_string(&mut out, &c.evidence);
        out.push_str(",\"hint_id\":");
        match c.hint_id {
            Some(id) => {
                let _ = json_string(&mut out, id);
            }
            None => out.push_str("null"),
        }
        out.push_str(",\"hint\":");
        match &c.hint {
            Some(hint) => {
                let _ = json_string(&mut out, hint);
            }
            None => out.push_str("null"),
        }
        out.push('}');
    }
    out.push_str("\n]}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Check> {
        vec![
            Check::new("init", Mark::Pass, "PID 1 is meshwait: meshwait -- app"),
            Check::new("readiness", Mark::Fail, "http://localhost:15020/healthz/ready: HTTP 503")
                .explained(
                    Mesh::Istio,
                    &Facts::probe(Outcome::NotReady {
                        status: 503,
                        body: "config not received from XDS server (is Istiod running?): cds updates: 0 successful, 0 rejected; lds updates: 0 successful, 0 rejected".into(),
                    }),
                ),
            Check::new("in flight", Mark::Info, "quote \" and back\\slash"),
        ]
    }

    #[test]
    fn text_report() {
        let text = render_text(Mesh::Istio, &sample());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "meshwait doctor (--mesh istio)");
        assert_eq!(
            lines[1],
            "✓ init           PID 1 is meshwait: meshwait -- app"
        );
        assert_eq!(
            lines[2],
            "✗ readiness      http://localhost:15020/healthz/ready: HTTP 503"
        );
        assert!(
            lines[3].starts_with(
                "                 → [no-config-from-istiod] Envoy has received no configuration"
            ),
            "{}",
            lines[3]
        );
        assert_eq!(lines[4], "· in flight      quote \" and back\\slash");
        assert_eq!(lines[5], "1 problem found");
    }

    /// Guards the operator's terminal: a neighbour's argv holding `ESC[2J` and a line break
    /// cleared the screen and printed a forged check line.
    #[test]
    fn text_report_escapes_and_caps_evidence() {
        let hostile = "meshwait -- app \u{1b}[2J\u{1b}[31m\n✓ init forged\u{2028}\u{202e}x";
        let checks = vec![
            Check::new("init", Mark::Pass, hostile),
            Check::new("in flight", Mark::Info, "y".repeat(5000)).hint("a\nb"),
        ];
        let text = render_text(Mesh::Istio, &checks);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(
            lines[1],
            "✓ init           meshwait -- app \\u{1b}[2J\\u{1b}[31m\\n✓ init forged\\u{2028}\\u{202e}x"
        );
        assert_eq!(
            lines[2].chars().count(),
            17 + EVIDENCE_SHOWN + 1,
            "{}",
            lines[2]
        );
        assert!(lines[2].ends_with('…'));
        assert!(lines[3].ends_with("→ a\\nb"), "{}", lines[3]);
        let json = render_json(Mesh::Istio, &checks);
        assert!(!json.contains(['\u{1b}', '\u{2028}', '\u{202e}']), "{json}");
        assert_eq!(json.lines().count(), 4, "{json}");
    }

    #[test]
    fn json_report_shape() {
        let json = render_json(Mesh::Istio, &sample());
        assert!(json.starts_with("{\"mesh\":\"istio\",\"ok\":false,\"problems\":1,\"checks\":["));
        assert!(json.contains("\"check\":\"readiness\",\"result\":\"fail\""));
        assert!(json.contains("\"hint_id\":\"no-config-from-istiod\""));
        assert!(json.contains("\"evidence\":\"quote \\\" and back\\\\slash\""));
        assert!(json.ends_with("]}\n"));
    }
}

//! doctor's judgement: each check reads what `gather` saw and says pass, fail or information,
//! with the evidence and, where the hint table or the check knows one, the next thing to try.

use std::fmt::Write as _;

use crate::commands::doctor::gather::{LINKERD_SHUTDOWN_VAR, QuitLook, Seen, SocketFacts};
use crate::commands::doctor::meshwaits::{Meshwaits, quits_proxy};
use crate::commands::doctor::report::{Check, Mark};
use crate::commands::plan::DoctorPlan;
use crate::proxy::diagnosis::{self, Facts};
use crate::proxy::envoy_admin::{AdminView, ServerState};
use crate::proxy::envoy_clusters::Flow;
use crate::proxy::mesh::Mesh;
use crate::proxy::sidecar_http::{Answer, NoAnswer, Outcome};
use crate::proxy::sidecar_url::{Host, SidecarUrl};
use crate::proxy::sidecar_view::Sight;
use crate::run::process_table::Process;
use crate::untrusted_text;

/// The checks that need the socket scan, by name.
const PORTS: &str = "proxy ports";
const PROXY_SOCKETS: &str = "proxy sockets";
const APP_LISTENERS: &str = "app listeners";
const IN_FLIGHT: &str = "in flight";

/// Every check, in report order.
pub fn judge(plan: &DoctorPlan, seen: Seen) -> Vec<Check> {
    let meshwaits = Meshwaits::among(&seen.processes, std::process::id());
    let supervisor = meshwaits.here.first();
    // An unreadable scan fails each check that needs it with the same evidence; the others read
    // it as empty (nothing seen listening, no proxy sockets).
    let unread = SocketFacts::default();
    let (sockets, [ports, proxy_sockets, app_listeners, in_flight]) = match &seen.sockets {
        Ok(s) => (
            s,
            [
                ports_check(plan, s),
                proxy_sockets_check(plan, s),
                app_listeners_check(s),
                in_flight_check(s),
            ],
        ),
        Err(why) => (
            &unread,
            [PORTS, PROXY_SOCKETS, APP_LISTENERS, IN_FLIGHT]
                .map(|name| Check::new(name, Mark::Fail, why.clone())),
        ),
    };
    let mut checks = vec![init_check(&seen.processes, &meshwaits), ports];
    checks.push(readiness_check(
        plan,
        seen.ready,
        seen.admin.clone(),
        sockets,
    ));
    checks.push(envoy_check(plan, seen.admin, sockets));
    checks.extend([proxy_sockets, app_listeners, in_flight]);
    checks.push(sidecar_check(plan.mesh, seen.sidecar));
    let quits = supervisor.and_then(|p| quits_proxy(p)).unwrap_or(false);
    let quit = quit_check(plan.mesh, seen.quit);
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

fn init_check(processes: &[Process], meshwaits: &Meshwaits<'_>) -> Check {
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
    const NAME: &str = PORTS;
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
        Some(diagnosis::ISTIO_NOT_READY) => Check {
            hint_id: None,
            hint: None,
            ..check
        },
        _ => check,
    }
}

fn proxy_sockets_check(plan: &DoctorPlan, sockets: &SocketFacts) -> Check {
    const NAME: &str = PROXY_SOCKETS;
    let uids = &plan.sockets.rules.uids;
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
    const NAME: &str = APP_LISTENERS;
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

fn in_flight_check(sockets: &SocketFacts) -> Check {
    const NAME: &str = IN_FLIGHT;
    let census = &sockets.in_flight;
    if census.drained() {
        return Check::new(
            NAME,
            Mark::Info,
            "no app connection has a request in flight: a drain would end now",
        );
    }
    Check::new(
        NAME,
        Mark::Info,
        format!("app connections with work in flight: {census}"),
    )
    .hint("`meshwait conns` lists them; a drain waits for these")
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

/// Whether the proxy can be asked to quit (for Jobs), from what asking without quitting found.
fn quit_check(mesh: Mesh, look: QuitLook) -> Check {
    const NAME: &str = "quit endpoint";
    const ENABLE: &str = "annotate the pod template with `config.linkerd.io/proxy-admin-shutdown: \
                          enabled`, or the Job's pod will not complete";
    match look {
        QuitLook::NoUrl => {
            let why = match mesh {
                Mesh::Ambient => {
                    "none for --mesh ambient: ztunnel serves the whole node, nothing in the pod \
                     quits"
                }
                _ => "none for --mesh none",
            };
            Check::new(NAME, Mark::Info, why)
        }
        QuitLook::NotTried(url) => Check::new(
            NAME,
            Mark::Info,
            format!("POST {url} (not tried: it would stop the proxy)"),
        ),
        // pilot-agent serves the path to POST only: 405 proves it is there.
        QuitLook::Istio(url, Outcome::NotReady { status: 405, .. }) => Check::new(
            NAME,
            Mark::Pass,
            format!("POST {url} is served (a GET is refused with 405)"),
        ),
        QuitLook::Istio(url, other) => Check::new(NAME, Mark::Fail, format!("GET {url}: {other}"))
            .hint(
                "`--quit-proxy` will not be able to stop the sidecar; the Job's pod will not \
                 complete until it stops",
            ),
        QuitLook::Linkerd { env: Err(e), .. } => {
            Check::new(NAME, Mark::Info, format!("cannot ask: {e}"))
        }
        QuitLook::Linkerd {
            url,
            env: Ok((env, fetched)),
        } => match fetched {
            Ok(Answer { status: 200, body }) => {
                let body = String::from_utf8_lossy(&body);
                if body.contains("\"true\"") {
                    Check::new(
                        NAME,
                        Mark::Pass,
                        format!("POST {url} is enabled ({LINKERD_SHUTDOWN_VAR}=true)"),
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
        },
    }
}

fn is_local(url: &SidecarUrl) -> bool {
    match &url.host {
        Host::Localhost => true,
        Host::Ip(ip) => ip.is_loopback(),
        Host::Name(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;
    use crate::commands::cli::Cli;
    use crate::commands::plan::Plan;

    fn doctor_plan(args: &[&str]) -> DoctorPlan {
        let cli = Cli::parse_args(args.iter().map(OsString::from).collect()).unwrap();
        match Plan::from_cli(cli).unwrap() {
            Plan::Doctor(plan) => *plan,
            _ => panic!("not doctor"),
        }
    }

    fn seen(quit: QuitLook, sockets: Result<SocketFacts, String>) -> Seen {
        Seen {
            ready: Some(Outcome::REFUSED),
            admin: None,
            sidecar: None,
            quit,
            processes: Vec::new(),
            sockets,
        }
    }

    /// One unreadable scan: each check that needs it fails once with the scan's error, and the
    /// checks that only consult it go on as if nothing listened.
    #[test]
    fn an_unreadable_scan_fails_the_checks_that_need_it() {
        let plan = doctor_plan(&["meshwait", "doctor"]);
        let why = "cannot read the sockets: permission denied";
        let checks = judge(&plan, seen(QuitLook::NoUrl, Err(why.into())));
        let failed: Vec<&str> = checks
            .iter()
            .filter(|c| c.evidence == why)
            .map(|c| c.name)
            .collect();
        assert_eq!(failed, [PORTS, PROXY_SOCKETS, APP_LISTENERS, IN_FLIGHT]);
        let readiness = checks.iter().find(|c| c.name == "readiness").unwrap();
        assert_eq!(readiness.mark, Mark::Fail);
        assert!(
            readiness
                .evidence
                .ends_with("connection refused (nothing listening yet)")
        );
    }

    #[test]
    fn an_empty_scan_passes_nothing_it_cannot_see() {
        let plan = doctor_plan(&["meshwait", "doctor"]);
        let checks = judge(&plan, seen(QuitLook::NoUrl, Ok(SocketFacts::default())));
        let mark = |name: &str| checks.iter().find(|c| c.name == name).unwrap().mark;
        assert_eq!(mark(PORTS), Mark::Fail);
        assert_eq!(mark(PROXY_SOCKETS), Mark::Fail);
        assert_eq!(mark(APP_LISTENERS), Mark::Info);
        assert_eq!(mark(IN_FLIGHT), Mark::Info);
    }

    /// pilot-agent's 405 to a GET proves the endpoint; anything else fails, but only as
    /// information when no supervising meshwait is going to ask.
    #[test]
    fn the_quit_endpoint_is_judged_by_its_answer_to_a_get() {
        let plan = doctor_plan(&["meshwait", "doctor"]);
        let url: SidecarUrl = "http://localhost:15020/quitquitquit".parse().unwrap();
        let quit = |outcome| {
            let checks = judge(
                &plan,
                seen(QuitLook::Istio(url.clone(), outcome), Err("x".into())),
            );
            checks.into_iter().last().unwrap()
        };
        let served = quit(Outcome::NotReady {
            status: 405,
            body: String::new(),
        });
        assert_eq!((served.name, served.mark), ("quit endpoint", Mark::Pass));
        let missing = quit(Outcome::NotReady {
            status: 404,
            body: String::new(),
        });
        assert_eq!(missing.mark, Mark::Info, "no meshwait here quits the proxy");
        assert!(
            missing.evidence.contains("HTTP 404"),
            "{}",
            missing.evidence
        );
        assert_eq!(
            quit_check(Mesh::Istio, QuitLook::Istio(url.clone(), Outcome::REFUSED)).mark,
            Mark::Fail
        );
    }
}

//! `meshwait doctor`: the check list against a stand-in sidecar in known troubled states.
//! The endpoint checks run anywhere (random ports); the whole-pod checks need root for a network
//! and PID namespace of their own, so that the proxy's ports and PID 1 are the test's.

// Tests state what they expect by unwrapping and panicking; the lints against both are for
// meshwait itself, which usually runs as PID 1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// Runs `meshwait doctor --json ARGS`: the exit code and the parsed report.
fn doctor_json(args: &[String]) -> (Option<i32>, Value) {
    let mut cmd = meshwait();
    cmd.args(["doctor", "--json"]).args(args);
    report_of(cmd)
}

/// Runs `cmd`, a doctor with `--json`: the exit code and the parsed report.
fn report_of(cmd: Command) -> (Option<i32>, Value) {
    let mut child = spawn(cmd);
    let status = wait_bounded(&mut child, Duration::from_secs(20));
    let out = stdout_of(&mut child);
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    (status.code(), report)
}

fn stdout_of(child: &mut Child) -> String {
    use std::io::Read;
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    out
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report}"))
}

#[test]
fn rejected_config_is_named_by_readiness_and_envoy() {
    let sidecar = Sidecar::anywhere("rejected");
    let (code, report) = doctor_json(&sidecar.endpoint_args());
    assert_eq!(code, Some(1), "{report}");
    assert_eq!(report["ok"], false);
    let readiness = check(&report, "readiness");
    assert_eq!(readiness["result"], "fail");
    assert_eq!(readiness["hint_id"], "config-rejected", "{readiness}");
    assert!(
        readiness["hint"].as_str().unwrap().contains("EnvoyFilter"),
        "{readiness}"
    );
    let envoy = check(&report, "envoy");
    assert_eq!(envoy["result"], "fail");
    assert!(
        envoy["evidence"]
            .as_str()
            .unwrap()
            .contains("state LIVE; cds 1 successful, 0 rejected; lds 0 successful, 1 rejected"),
        "{envoy}"
    );
    assert_eq!(envoy["hint_id"], "config-rejected");
}

#[test]
fn an_empty_503_is_explained_from_envoys_admin() {
    let sidecar = Sidecar::anywhere("no-config");
    let (code, report) = doctor_json(&sidecar.endpoint_args());
    assert_eq!(code, Some(1));
    let readiness = check(&report, "readiness");
    assert_eq!(readiness["hint_id"], "no-config-from-istiod", "{readiness}");
    let hint = readiness["hint"].as_str().unwrap();
    assert!(
        hint.contains("failed to reach the xDS server 5 times"),
        "{hint}"
    );
    assert!(hint.contains("15012"), "{hint}");
    let envoy = check(&report, "envoy");
    assert!(
        envoy["evidence"]
            .as_str()
            .unwrap()
            .contains("state PRE_INITIALIZING"),
        "{envoy}"
    );
}

#[test]
fn a_healthy_proxy_passes_the_endpoint_checks() {
    let sidecar = Sidecar::anywhere("healthy");
    let (_, report) = doctor_json(&sidecar.endpoint_args());
    for name in ["readiness", "envoy"] {
        let c = check(&report, name);
        assert_eq!(c["result"], "pass", "{c}");
        assert!(c["hint"].is_null(), "{c}");
    }
}

#[test]
fn hung_endpoints_cannot_hold_the_doctor() {
    let sidecar = Sidecar::anywhere("hang");
    let mut args = sidecar.endpoint_args();
    // Asked to wait 30 s per request, the doctor still bounds itself.
    args.extend(["--request-timeout".into(), "30s".into()]);
    let started = Instant::now();
    let (code, report) = doctor_json(&args);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "doctor took {took:?}");
    assert_eq!(code, Some(1));
    let readiness = check(&report, "readiness");
    assert_eq!(readiness["hint_id"], "status-server-hung", "{readiness}");
    let envoy = check(&report, "envoy");
    assert!(
        envoy["evidence"]
            .as_str()
            .unwrap()
            .ends_with("no answer in time"),
        "{envoy}"
    );
}

#[test]
fn text_report_marks_and_hints() {
    let sidecar = Sidecar::anywhere("rejected");
    let mut cmd = meshwait();
    cmd.arg("doctor").args(sidecar.endpoint_args());
    let mut child = spawn(cmd);
    let status = wait_bounded(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    let out = stdout_of(&mut child);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "meshwait doctor (--mesh istio)");
    let readiness = lines
        .iter()
        .position(|l| l.starts_with("✗ readiness "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        lines[readiness + 1].contains("→ [config-rejected] Envoy rejected configuration"),
        "{out}"
    );
    // The same hint under envoy is not repeated in full.
    assert!(out.contains("→ [config-rejected] as above"), "{out}");
    assert!(lines.last().unwrap().ends_with("problems found"), "{out}");
}

#[test]
fn a_port_listening_elsewhere_is_not_called_absent() {
    // The status and admin ports listen, but not where the URLs point: 127.0.0.2 and ::1 take
    // no connection to 127.0.0.1. The ports line lists them listening, so no hint may say that
    // nothing listens there.
    let status = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let status_port = status.local_addr().unwrap().port();
    let Ok(admin) = std::net::TcpListener::bind("[::1]:0") else {
        eprintln!("skipped: no IPv6 loopback");
        return;
    };
    let admin_port = admin.local_addr().unwrap().port();
    let ready_url = format!("http://127.0.0.1:{status_port}/healthz/ready");
    let (code, report) = doctor_json(&[
        "--ready-url".into(),
        ready_url,
        "--admin-url".into(),
        format!("http://127.0.0.1:{admin_port}"),
    ]);
    assert_eq!(code, Some(1));
    let ports = check(&report, "proxy ports");
    assert!(
        ports["evidence"]
            .as_str()
            .unwrap()
            .contains(&format!("{status_port} (readiness, uid ")),
        "{ports}"
    );
    let readiness = check(&report, "readiness");
    assert_eq!(readiness["result"], "fail");
    assert!(
        !readiness["evidence"]
            .as_str()
            .unwrap()
            .contains("nothing listening"),
        "{readiness}"
    );
    assert!(readiness["hint_id"].is_null(), "{readiness}");
    let hint = readiness["hint"].as_str().unwrap();
    for text in [
        &format!("listens on 127.0.0.2:{status_port}"),
        &format!("not on 127.0.0.1:{status_port}"),
        &format!(
            "--ready-url at an address it listens on, e.g. http://127.0.0.2:{status_port}/healthz/ready"
        ),
    ] {
        assert!(hint.contains(text.as_str()), "{text}: {hint}");
    }
    let envoy = check(&report, "envoy");
    assert!(envoy["hint_id"].is_null(), "{envoy}");
    let hint = envoy["hint"].as_str().unwrap();
    assert!(
        hint.contains(&format!("listens on [::1]:{admin_port}")),
        "{hint}"
    );
    assert!(hint.contains("IPv4 against IPv6"), "{hint}");
    // The proxy's UID holds none of it; whoever does is named, not an absent sidecar.
    let sockets = check(&report, "proxy sockets");
    assert_ne!(sockets["hint_id"], "istio-not-injected", "{sockets}");
}

#[test]
fn host_names_for_the_status_port_and_the_admin_are_read_together() {
    // All of doctor's requests start at once; with host names they share each name's lookup.
    // Before, all but one failed: Envoy ✗ "the lookup ... has not finished".
    let test = "host_names_for_the_status_port_and_the_admin_are_read_together";
    if !common::root_or_skip(test, &["--mount"]) {
        return;
    }
    let dir = scratch_dir("doctor-names");
    let hosts = hosts_file(&dir, &["status.sidecar.test", "admin.sidecar.test"]);
    let sidecar = Sidecar::anywhere("no-config");
    let mut cmd = meshwait_with_etc(Some(&hosts), None);
    cmd.args(["doctor", "--json"]).args([
        "--ready-url",
        &format!(
            "http://status.sidecar.test:{}/healthz/ready",
            sidecar.status
        ),
        "--admin-url",
        &format!("http://admin.sidecar.test:{}", sidecar.admin),
    ]);
    let (code, report) = report_of(cmd);
    assert_eq!(code, Some(1));
    let readiness = check(&report, "readiness");
    assert_eq!(readiness["hint_id"], "no-config-from-istiod", "{readiness}");
    let envoy = check(&report, "envoy");
    assert!(
        envoy["evidence"]
            .as_str()
            .unwrap()
            .contains("state PRE_INITIALIZING; cds 0 successful, 0 rejected"),
        "{envoy}"
    );
    let sidecar_view = check(&report, "sidecar view");
    assert!(
        !sidecar_view["evidence"]
            .as_str()
            .unwrap()
            .contains("lookup"),
        "{sidecar_view}"
    );
}

#[test]
fn a_dead_resolver_is_named_by_readiness_and_envoy() {
    let test = "a_dead_resolver_is_named_by_readiness_and_envoy";
    if !common::root_or_skip(test, &["--mount"]) {
        return;
    }
    let Some(resolver) = DeadResolver::at("127.0.0.78", "doctor-resolver") else {
        return;
    };
    let mut cmd = meshwait_with_etc(None, Some(&resolver.conf));
    cmd.args(["doctor", "--json", "--request-timeout", "300ms"])
        .args([
            "--ready-url",
            "http://proxy.invalid:15020/healthz/ready",
            "--admin-url",
            "http://proxy.invalid:15000",
        ]);
    let started = Instant::now();
    let (code, report) = report_of(cmd);
    drop(resolver);
    assert!(started.elapsed() < Duration::from_secs(5), "{report:#}");
    assert_eq!(code, Some(1));
    for name in ["readiness", "envoy"] {
        let c = check(&report, name);
        assert_eq!(c["hint_id"], "name-lookup-slow", "{name}: {c}");
        assert!(
            c["evidence"]
                .as_str()
                .unwrap()
                .contains("the name lookup of proxy.invalid has not answered in"),
            "{c}"
        );
    }
}

fn root_or_skip(test: &str) -> bool {
    common::root_or_skip(test, &["--net", "--pid", "--fork", "--mount-proc"])
}

/// `meshwait doctor --json ARGS` as a process of a pod: in `ns`, in a PID namespace of its own
/// whose PID 1 is `init` (a command line ending where doctor's arguments go).
fn doctor_in_pod(ns: &Netns, init: &[&str], args: &[&str]) -> (Option<i32>, Value) {
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--"])
        .args(init)
        .args([MESHWAIT, "doctor", "--json"])
        .args(args);
    without_meshwait_env(&mut cmd);
    ns.enter(&mut cmd);
    report_of(cmd)
}

/// The Istio ports, served by a stand-in running as root: `--proxy-uid 0` makes its sockets the
/// proxy's.
fn istio_pod(mode: &str) -> (Netns, Sidecar) {
    let ns = Netns::new();
    let sidecar = Sidecar::start(mode, &[15020, 15000, 15001, 15006], Some(&ns));
    (ns, sidecar)
}

#[test]
fn a_healthy_pod_under_meshwait_has_nothing_wrong() {
    if !root_or_skip("a_healthy_pod_under_meshwait_has_nothing_wrong") {
        return;
    }
    let (ns, _sidecar) = istio_pod("healthy");
    let init = [MESHWAIT, "--mesh", "none", "--no-wait", "--"];
    let (code, report) = doctor_in_pod(&ns, &init, &["--proxy-uid", "0"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["ok"], true);
    assert_eq!(report["problems"], 0);
    for c in report["checks"].as_array().unwrap() {
        assert_ne!(c["result"], "fail", "{c}");
    }
    for name in [
        "init",
        "proxy ports",
        "readiness",
        "envoy",
        "proxy sockets",
        "quit endpoint",
    ] {
        assert_eq!(check(&report, name)["result"], "pass", "{name}: {report:#}");
    }
    let init = check(&report, "init")["evidence"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(init.starts_with("PID 1 is meshwait: "), "{init}");
    let quit = check(&report, "quit endpoint")["evidence"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(quit.contains("405"), "{quit}");
}

#[test]
fn a_pod_without_meshwait_or_configured_envoy_is_diagnosed() {
    if !root_or_skip("a_pod_without_meshwait_or_configured_envoy_is_diagnosed") {
        return;
    }
    let (ns, _sidecar) = istio_pod("no-config");
    let (code, report) = doctor_in_pod(
        &ns,
        &["sh", "-c", "exec \"$@\"", "sh"],
        &["--proxy-uid", "0"],
    );
    assert_eq!(code, Some(1), "{report:#}");
    // `sh -c 'exec "$@"'` replaces itself with doctor, so PID 1 is doctor: not a supervisor.
    let init = check(&report, "init");
    assert_eq!(init["result"], "fail", "{init}");
    assert!(
        init["hint"]
            .as_str()
            .unwrap()
            .contains("ENTRYPOINT [\"meshwait\""),
        "{init}"
    );
    let ports = check(&report, "proxy ports");
    assert_eq!(ports["result"], "fail");
    let evidence = ports["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("absent: 15001 (outbound capture), 15006 (inbound capture)"),
        "{evidence}"
    );
    assert!(
        ports["hint"]
            .as_str()
            .unwrap()
            .contains("capture listeners"),
        "{ports}"
    );
    assert_eq!(
        check(&report, "readiness")["hint_id"],
        "no-config-from-istiod"
    );
    // The sidecar is there (its sockets are), so nothing points at injection.
    assert_eq!(check(&report, "proxy sockets")["result"], "pass");
}

#[test]
fn a_pod_with_no_sidecar_points_at_injection() {
    if !root_or_skip("a_pod_with_no_sidecar_points_at_injection") {
        return;
    }
    let ns = Netns::new();
    let init = [MESHWAIT, "--mesh", "none", "--no-wait", "--"];
    let (code, report) = doctor_in_pod(&ns, &init, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(check(&report, "init")["result"], "pass");
    for name in ["proxy ports", "readiness", "proxy sockets", "envoy"] {
        assert_eq!(
            check(&report, name)["hint_id"],
            "istio-not-injected",
            "{name}: {report:#}"
        );
    }
    assert_eq!(check(&report, "quit endpoint")["result"], "info");
}

/// Runs `neighbours.py` as PID 1 of a PID namespace of its own, with a meshwait neighbour
/// `where` ("here" or "elsewhere") whose argv holds `arg`, then `meshwait doctor --mesh none
/// EXTRA`: the exit code, the neighbours' pids and the doctor's stdout.
fn doctor_among_neighbours(where_: &str, arg: &str, extra: &[&str]) -> (Option<i32>, String) {
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--", python()])
        .arg(helper("neighbours.py"))
        .args([
            MESHWAIT, where_, arg, "--", MESHWAIT, "doctor", "--mesh", "none",
        ])
        .args(extra);
    without_meshwait_env(&mut cmd);
    let mut child = spawn(cmd);
    let status = wait_bounded(&mut child, Duration::from_secs(30));
    let out = stdout_of(&mut child);
    assert!(out.starts_with("neighbours "), "{out}");
    (status.code(), out)
}

/// What a neighbour's argv may hold: a screen clear, a colour, a line break followed by a forged
/// check line, a Unicode line separator and a right-to-left override.
const HOSTILE: &str = "\u{1b}[2J\u{1b}[31m\n✓ init           forged pass\u{2028}✓ x\u{202e}gnp.exe";

/// Guards the init check against neighbours: an unreaped meshwait (argv empty, read as a bare
/// `meshwait`) and another container's meshwait (a shared PID namespace) each made it pass,
/// though nothing supervises this container. And the doctor's text report printed the
/// neighbour's argv raw: it cleared the terminal and printed a forged line.
#[test]
fn meshwaits_of_other_containers_and_zombies_supervise_nothing() {
    if !root_or_skip("meshwaits_of_other_containers_and_zombies_supervise_nothing") {
        return;
    }
    let (code, out) = doctor_among_neighbours("elsewhere", HOSTILE, &["--json"]);
    assert_eq!(code, Some(1), "{out}");
    let (pids, json) = out.split_once('\n').unwrap();
    let neighbour = pids.rsplit(' ').next().unwrap();
    let report: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let init = check(&report, "init");
    assert_eq!(init["result"], "fail", "{init}");
    let evidence = init["evidence"].as_str().unwrap();
    assert!(evidence.starts_with("PID 1 is "), "{evidence}");
    assert!(evidence.contains("neighbours.py"), "{evidence}");
    assert!(
        evidence.ends_with(&format!(
            "; pid {neighbour} is a meshwait of another container"
        )),
        "{evidence}"
    );

    let (code, text) = doctor_among_neighbours("elsewhere", HOSTILE, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("\n✗ init "), "{text}");
    assert_one_line_each(&text);
}

/// The hostile text is in the report (PID 1's argv holds it too) but only escaped: no raw
/// control, and no line of its own.
fn assert_one_line_each(text: &str) {
    for raw in ['\u{1b}', '\u{2028}', '\u{202e}'] {
        assert!(!text.contains(raw), "{:x} in {text}", raw as u32);
    }
    assert!(text.contains("\\u{1b}[2J\\u{1b}[31m\\n✓ init"), "{text}");
    let init: Vec<&str> = text.lines().filter(|l| l.contains(" init ")).collect();
    assert_eq!(init.len(), 1, "{text}");
    assert!(!text.lines().any(|l| l.starts_with("✓ x")), "{text}");
}

/// Guards the text report: the app's own meshwait (a real supervisor) with a hostile argument
/// passes the init check, and its argv is shown escaped, on one line, never raw.
#[test]
fn a_hostile_argv_is_shown_escaped_on_one_line() {
    if !root_or_skip("a_hostile_argv_is_shown_escaped_on_one_line") {
        return;
    }
    let (code, text) = doctor_among_neighbours("here", HOSTILE, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert_one_line_each(&text);
    let init = text.lines().find(|l| l.contains(" init ")).unwrap();
    assert!(
        init.starts_with("✓ init           meshwait is pid "),
        "{text}"
    );
    assert!(
        init.contains(
            "sh -c sleep 60 \\u{1b}[2J\\u{1b}[31m\\n✓ init           forged pass\\u{2028}✓ x\\u{202e}gnp.exe"
        ),
        "{text}"
    );
}

#[test]
fn an_ambient_pod_is_told_apart_and_pointed_at_mesh_ambient() {
    // ztunnel's in-pod listeners and no status port: `--mesh istio` must name ambient mode, not
    // injection (labelling the namespace for injection is the wrong fix there).
    if !root_or_skip("an_ambient_pod_is_told_apart_and_pointed_at_mesh_ambient") {
        return;
    }
    let ns = Netns::new();
    let _ztunnel = Listeners::start(&[15001, 15006, 15008, 15053], &ns);
    let init = [MESHWAIT, "--mesh", "ambient", "--"];
    let (code, report) = doctor_in_pod(&ns, &init, &["--mesh", "istio"]);
    assert_eq!(code, Some(1), "{report:#}");
    for name in ["proxy ports", "readiness", "envoy", "proxy sockets"] {
        assert_eq!(
            check(&report, name)["hint_id"],
            "istio-ambient-pod",
            "{name}: {report:#}"
        );
    }
    let hint = check(&report, "readiness")["hint"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(hint.contains("use --mesh ambient"), "{hint}");

    // With --mesh ambient the same pod has nothing wrong: ztunnel's listeners are found, and
    // there is no sidecar to read or quit.
    let (code, report) = doctor_in_pod(&ns, &init, &["--mesh", "ambient"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(
        check(&report, "proxy ports")["result"],
        "pass",
        "{report:#}"
    );
    // Each says why in ambient mode's own terms, not --mesh none's.
    for name in [
        "readiness",
        "envoy",
        "proxy sockets",
        "sidecar view",
        "quit endpoint",
    ] {
        let c = check(&report, name);
        assert_eq!(c["result"], "info", "{name}: {report:#}");
        let evidence = c["evidence"].as_str().unwrap();
        assert!(evidence.contains("ambient"), "{name}: {evidence}");
        assert!(!evidence.contains("--mesh none"), "{name}: {evidence}");
    }
}

#[test]
fn an_ambient_preset_without_ztunnel_points_at_enrolment() {
    if !root_or_skip("an_ambient_preset_without_ztunnel_points_at_enrolment") {
        return;
    }
    let ns = Netns::new();
    let init = [MESHWAIT, "--mesh", "ambient", "--"];
    let (code, report) = doctor_in_pod(&ns, &init, &["--mesh", "ambient"]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(
        check(&report, "proxy ports")["hint_id"],
        "ambient-not-enrolled",
        "{report:#}"
    );
}

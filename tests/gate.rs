//! The readiness gate, driven through the built binary against a scripted readiness server.

// Tests state what they expect by unwrapping and panicking; the lints against both are for
// meshwait itself, which usually runs as PID 1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;

const ISTIO_503: &str = "config not received from Pilot (is Pilot running?): cds updates: 1 successful, 0 rejected; lds updates: 0 successful, 1 rejected";

/// A meshwait command that gates `sh -c SCRIPT` on `url`, probing quickly.
fn gated(url: &str, script: &str) -> std::process::Command {
    gated_with(url, &[], script)
}

/// Turns the readiness server to 200 and returns meshwait's exit code.
fn turn_ready_and_wait(server: &ReadyServer, child: &mut std::process::Child) -> Option<i32> {
    server.set(Reply::Status(200, ""));
    wait_bounded(child, Duration::from_secs(5)).code()
}

fn gated_with(url: &str, options: &[&str], script: &str) -> std::process::Command {
    let mut cmd = meshwait();
    cmd.args(["--ready-url", url]).args(options);
    if !options.contains(&"--interval") {
        cmd.args(["--interval", "20ms"]);
    }
    cmd.args(["--", "sh", "-c", script]);
    cmd
}

#[test]
fn gate_holds_the_app_until_200_and_logs_the_503_body() {
    let server = ReadyServer::start("127.0.0.1:0", vec![], Reply::Status(503, ISTIO_503));
    let dir = scratch_dir("hold");
    let mark = dir.join("started");
    let mut child = spawn(gated(
        &server.url(),
        &format!("echo started > {}", mark.display()),
    ));
    assert!(
        eventually(Duration::from_secs(5), || server.served().len() >= 5),
        "gate is probing"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !mark.exists(),
        "the app started while the proxy answered 503"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "meshwait gave up early"
    );
    server.set(Reply::Status(200, "ok"));
    let status = wait_bounded(&mut child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    assert!(mark.exists(), "the app never started after 200");
    let served = server.served();
    assert_eq!(served.last(), Some(&Reply::Status(200, "ok")));
    assert_eq!(
        served
            .iter()
            .filter(|r| **r == Reply::Status(200, "ok"))
            .count(),
        1,
        "probing stopped at ready"
    );
    let err = stderr_of(&mut child);
    assert!(err.contains(&format!("HTTP 503: {ISTIO_503}")), "{err}");
    assert!(err.contains("proxy ready"), "{err}");
}

/// Two bad answers, then 200: the gate must carry on past them, say what they were, and start
/// the app.
fn survives_two(bad: Reply, options: &[&str], explanation: &[&str]) {
    let server = ReadyServer::start(
        "127.0.0.1:0",
        vec![bad.clone(), bad.clone()],
        Reply::Status(200, "LIVE"),
    );
    let mut child = spawn(gated_with(&server.url(), options, "exit 0"));
    let status = wait_bounded(&mut child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{bad:?}");
    assert_eq!(
        server.served()[..3],
        [bad.clone(), bad.clone(), Reply::Status(200, "LIVE")]
    );
    let err = stderr_of(&mut child);
    assert!(
        explanation.iter().any(|e| err.contains(e)),
        "{bad:?} should be explained as one of {explanation:?}: {err}"
    );
}

#[test]
fn hung_endpoint_does_not_stall_the_gate() {
    let options = ["--request-timeout", "200ms"];
    survives_two(
        Reply::Hang,
        &options,
        &["no answer within the request timeout"],
    );
}

#[test]
fn reset_connections_are_retried() {
    let explanation = ["reset by peer", "closed before"];
    survives_two(Reply::Reset, &[], &explanation);
}

#[test]
fn garbage_answers_are_retried_and_named() {
    survives_two(Reply::Garbage, &[], &["not HTTP"]);
}

#[test]
fn localhost_reaches_a_proxy_listening_only_on_ipv6_loopback() {
    let server = ReadyServer::start("[::1]:0", vec![], Reply::Status(200, ""));
    let mut child = spawn(gated(&server.url(), "exit 0"));
    assert_eq!(
        wait_bounded(&mut child, Duration::from_secs(5)).code(),
        Some(0)
    );
    assert_eq!(server.served().len(), 1);
}

#[test]
fn timeout_exits_69_without_starting_the_app_and_says_what_was_tried() {
    let server = ReadyServer::start(
        "127.0.0.1:0",
        vec![],
        Reply::Status(503, "no healthy upstream"),
    );
    let dir = scratch_dir("timeout");
    let mark = dir.join("started");
    let script = format!("touch {}", mark.display());
    let mut child = spawn(gated_with(&server.url(), &["--timeout", "300ms"], &script));
    let status = wait_bounded(&mut child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(69));
    assert!(!mark.exists());
    let err = stderr_of(&mut child);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains("not ready after"), "{last}");
    assert!(last.contains(&server.url()), "{last}");
    assert!(
        last.contains("last answer: HTTP 503: no healthy upstream"),
        "{last}"
    );
}

#[test]
fn on_timeout_start_runs_the_app_anyway() {
    let mut cmd = meshwait();
    cmd.args([
        "--ready-url",
        "http://127.0.0.1:1/ready",
        "--interval",
        "20ms",
        "--timeout",
        "100ms",
    ])
    .args(["--on-timeout", "start", "--", "sh", "-c", "exit 5"]);
    let mut child = spawn(cmd);
    assert_eq!(
        wait_bounded(&mut child, Duration::from_secs(5)).code(),
        Some(5)
    );
    assert!(stderr_of(&mut child).contains("continuing because --on-timeout start"));
}

#[test]
fn stop_signals_during_the_gate_exit_128_plus_n_and_never_start_the_app() {
    let server = ReadyServer::start("127.0.0.1:0", vec![], Reply::Status(503, "not yet"));
    let dir = scratch_dir("stopgate");
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
        let before = server.served().len();
        let mark = dir.join(format!("started-{signal}"));
        let mut child = spawn(gated(&server.url(), &format!("touch {}", mark.display())));
        assert!(eventually(Duration::from_secs(5), || server.served().len()
            > before + 1));
        send(child.id(), signal);
        let status = wait_bounded(&mut child, Duration::from_secs(5));
        assert_eq!(status.code(), Some(128 + signal), "signal {signal}");
        assert!(!mark.exists(), "app started despite signal {signal}");
    }
}

/// Guards against a feedback loop: with stderr a pipe nobody reads, every line meshwait logs
/// raises a SIGPIPE for itself. The gate must let such signals pass without a line of their own,
/// which would raise the next one and spin a core until the proxy is ready. The bound is a
/// quarter of the time watched, as in init's idle test.
#[test]
fn its_own_sigpipe_from_a_closed_log_pipe_does_not_spin_the_gate() {
    let server = ReadyServer::start("127.0.0.1:0", vec![], Reply::Status(503, "not yet"));
    let mut cmd = gated_with(&server.url(), &["--log-level", "debug"], "exit 0");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    drop(child.stderr.take());
    assert!(eventually(Duration::from_secs(5), || !server
        .served()
        .is_empty()));
    // A line to write into the closed pipe: the note of a signal that is no stop.
    send(child.id(), libc::SIGUSR1);
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(child.id());
    std::thread::sleep(Duration::from_millis(2000));
    let used = cpu_ticks(child.id()) - before;
    survives_then_stops(&mut child, libc::SIGUSR2, Duration::from_millis(50));
    let per_second = ticks_per_second();
    assert!(
        used * 4 < 2 * per_second,
        "meshwait used {used} ticks of CPU ({per_second} a second) in 2 s of gating"
    );
}

/// `signal` leaves meshwait running for `settle`; SIGTERM then ends it with 143 at once.
fn survives_then_stops(child: &mut std::process::Child, signal: i32, settle: Duration) {
    send(child.id(), signal);
    std::thread::sleep(settle);
    assert!(
        child.try_wait().unwrap().is_none(),
        "signal {signal} stopped meshwait"
    );
    send(child.id(), libc::SIGTERM);
    assert_eq!(
        wait_bounded(child, Duration::from_secs(5)).code(),
        Some(143)
    );
}

/// Guards the one-shot commands' stop: `ready` and `doctor` wait for answers with every signal
/// blocked, so a stop signal must end them at once, not after the request's bound.
#[test]
fn a_stop_signal_ends_ready_and_doctor_while_the_proxy_hangs() {
    let server = ReadyServer::start("127.0.0.1:0", vec![], Reply::Hang);
    let url = server.url();
    let runs: [&[&str]; 2] = [
        &["ready", "--ready-url", &url, "--request-timeout", "30s"],
        &[
            "doctor",
            "--mesh",
            "none",
            "--ready-url",
            &url,
            "--request-timeout",
            "30s",
        ],
    ];
    for args in runs {
        let before = server.served().len();
        let mut cmd = meshwait();
        cmd.args(args);
        let mut child = spawn(cmd);
        assert!(
            eventually(Duration::from_secs(5), || server.served().len() > before),
            "{args:?} never asked"
        );
        std::thread::sleep(Duration::from_millis(50));
        survives_then_stops(&mut child, libc::SIGUSR1, Duration::from_millis(50));
    }
}

#[test]
fn other_signals_during_the_gate_are_not_fatal() {
    let server = ReadyServer::start("127.0.0.1:0", vec![], Reply::Status(503, "not yet"));
    let mut child = spawn(gated_with(
        &server.url(),
        &["--log-level", "debug"],
        "exit 4",
    ));
    assert!(eventually(Duration::from_secs(5), || !server
        .served()
        .is_empty()));
    for signal in [
        libc::SIGUSR1,
        libc::SIGWINCH,
        libc::SIGCHLD,
        libc::SIGRTMIN() + 1,
    ] {
        send(child.id(), signal);
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(child.try_wait().unwrap().is_none());
    assert_eq!(turn_ready_and_wait(&server, &mut child), Some(4));
    // Each is noted, SIGCHLD aside: that one only means a child to reap.
    let log = stderr_of(&mut child);
    let noted = |name: &str| {
        log.lines().any(|l| {
            l.contains("signal during the gate, no app to forward it to")
                && l.contains(&format!("signal={name}"))
        })
    };
    assert!(noted("SIGUSR1") && noted("SIGWINCH"), "{log}");
    assert!(!noted("SIGCHLD"), "{log}");
}

#[test]
fn zero_timeout_waits_past_the_default_bound() {
    // Not a timing assertion: only that `0` does not mean "give up at once".
    let server = ReadyServer::start("127.0.0.1:0", vec![], Reply::Status(503, ""));
    let mut cmd = meshwait();
    cmd.args([
        "--ready-url",
        &server.url(),
        "--interval",
        "10ms",
        "--timeout",
        "0",
        "--",
        "true",
    ]);
    let mut child = spawn(cmd);
    assert!(eventually(Duration::from_secs(5), || server.served().len() >= 20));
    assert!(child.try_wait().unwrap().is_none());
    assert_eq!(turn_ready_and_wait(&server, &mut child), Some(0));
}

#[test]
fn ready_subcommand_probes_once() {
    let server = ReadyServer::start("127.0.0.1:0", vec![], Reply::Status(503, "warming up"));
    let out = meshwait()
        .args(["ready", "--ready-url", &server.url()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("not ready:") && text.contains("HTTP 503: warming up"),
        "{text}"
    );
    assert_eq!(server.served().len(), 1);
    server.set(Reply::Status(200, "LIVE"));
    let out = meshwait()
        .args(["ready", "--ready-url", &server.url()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ready:"));
    let out = meshwait()
        .args(["ready", "--ready-url", "http://127.0.0.1:1/"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("connection refused"));
}

#[test]
fn ready_wait_gates_without_a_command() {
    let ready_wait = |url: &str| {
        let mut cmd = meshwait();
        cmd.args(["ready", "--wait", "--interval", "10ms", "--timeout", "1s"])
            .args(["--ready-url", url]);
        cmd
    };
    let script = vec![Reply::Status(503, ""), Reply::Status(503, "")];
    let server = ReadyServer::start("127.0.0.1:0", script, Reply::Status(200, ""));
    let out = ready_wait(&server.url()).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(server.served().len(), 3);
    let out = ready_wait("http://127.0.0.1:1/").output().unwrap();
    assert_eq!(out.status.code(), Some(69));
    // A probe answers for the proxy alone, even when the container says "start anyway".
    let out = ready_wait("http://127.0.0.1:1/")
        .env("MESHWAIT_ON_TIMEOUT", "start")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
}

#[test]
fn environment_configures_the_gate() {
    let server = ReadyServer::start("127.0.0.1:0", vec![], Reply::Status(503, ""));
    let out = meshwait()
        .env("MESHWAIT_READY_URL", server.url())
        .env("MESHWAIT_INTERVAL", "10ms")
        .env("MESHWAIT_TIMEOUT", "150ms")
        .env("MESHWAIT_LOG_FORMAT", "json")
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with('{')
            && last.contains("\"severity\":\"ERROR\"")
            && last.contains("\"exit_code\":69"),
        "{last}"
    );
    assert!(server.served().len() >= 3);
}

#[test]
fn a_hangup_meshwait_was_started_ignoring_does_not_stop_the_gate() {
    use std::os::unix::process::CommandExt;
    let server = ReadyServer::start("127.0.0.1:0", vec![], Reply::Status(503, ""));
    let mut cmd = gated(&server.url(), "exit 0");
    // SAFETY: between fork and exec only signal(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN); // as under nohup
            Ok(())
        });
    }
    let mut child = spawn(cmd);
    assert!(eventually(Duration::from_secs(5), || !server
        .served()
        .is_empty()));
    survives_then_stops(&mut child, libc::SIGHUP, Duration::from_millis(200));
}

#[test]
fn probe_starts_are_never_closer_than_the_interval() {
    // Answers alternate between slower than the interval and instant. A schedule that catches
    // up after a late probe starts the next one at the following tick: 30 ms after a 70 ms
    // answer to a probe every 50 ms. Margins are wide because accept times carry the machine's
    // scheduling jitter (a busy CI machine showed 2 ms at a 10 ms interval).
    let script = (0..20)
        .map(|i| {
            if i % 2 == 0 {
                Reply::Delayed(70, 503)
            } else {
                Reply::Status(503, "")
            }
        })
        .collect();
    let server = ReadyServer::start("127.0.0.1:0", script, Reply::Status(503, ""));
    let mut child = spawn(gated_with(&server.url(), &["--interval", "50ms"], "exit 0"));
    assert!(eventually(Duration::from_secs(10), || server
        .served()
        .len()
        >= 20));
    assert_eq!(turn_ready_and_wait(&server, &mut child), Some(0));
    let arrivals = server.arrivals();
    let closest = arrivals.windows(2).map(|w| w[1] - w[0]).min().unwrap();
    // Halfway between the catch-up gap (30 ms) and the interval (50 ms), less 5 ms of jitter.
    assert!(
        closest >= Duration::from_millis(40),
        "two probes {closest:?} apart"
    );
}

#[test]
fn a_host_name_is_resolved_at_each_probe() {
    // Needs a name this machine resolves to a loopback address; its own host name usually is.
    use std::net::ToSocketAddrs;
    let name = String::from_utf8(
        std::process::Command::new("hostname")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    let loopback = (name.as_str(), 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.find(|a| a.ip().is_loopback() && a.is_ipv4()));
    let Some(addr) = loopback else {
        eprintln!("skipped: host name {name:?} does not resolve to IPv4 loopback here");
        return;
    };
    let server = ReadyServer::start(&format!("{}:0", addr.ip()), vec![], Reply::Status(200, ""));
    let url = format!("http://{name}:{}/ready", server.addr.port());
    let out = meshwait()
        .args(["ready", "--ready-url", &url])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(server.served().len(), 1);
}

#[test]
fn a_dead_resolver_neither_stalls_the_gate_nor_delays_the_exit() {
    // A resolver that never answers, seen only by meshwait: a private mount namespace whose
    // /etc/resolv.conf names a loopback address where a UDP socket swallows every query.
    if !root_or_skip(
        "a_dead_resolver_neither_stalls_the_gate_nor_delays_the_exit",
        &["--mount"],
    ) {
        return;
    }
    let Some(resolver) = DeadResolver::at("127.0.0.77", "resolver") else {
        return;
    };
    let started = std::time::Instant::now();
    let out = meshwait_with_etc(None, Some(&resolver.conf))
        .args(["ready", "--wait", "--interval", "50ms"])
        .args(["--ready-url", "http://proxy.invalid:15020/ready"])
        .args(["--admin-url", "http://proxy.invalid:15000"])
        .args(["--request-timeout", "200ms", "--timeout", "1s"])
        .args(["--hint-after", "300ms"])
        .output()
        .unwrap();
    drop(resolver);
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{err}");
    // A behaviour bound, not a speed target: one stuck lookup takes 10 s here, and exiting must
    // not wait for it (nor for lookups queued behind it).
    assert!(took < Duration::from_secs(5), "took {took:?}: {err}");
    // The lookup is named, not a hung status server.
    let hints: Vec<&str> = err.lines().filter(|l| l.contains("hint=")).collect();
    assert!(!hints.is_empty(), "{err}");
    for line in &hints {
        assert!(line.contains("hint=name-lookup-slow"), "{line}");
    }
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("last answer: the name lookup of proxy.invalid has not answered in"),
        "{last}"
    );
    assert!(last.contains("/etc/resolv.conf"), "{last}");
}

#[test]
fn host_names_for_the_status_port_and_the_admin_are_looked_up_together() {
    // A probe and the admin reads that explain its 503 want the same name at once: they share
    // its lookup. Before, all but one of them failed, and the hint fell back to what the
    // admin's state alone says (waiting-for-clusters).
    if !root_or_skip(
        "host_names_for_the_status_port_and_the_admin_are_looked_up_together",
        &["--mount"],
    ) {
        return;
    }
    let dir = scratch_dir("names");
    let hosts = hosts_file(&dir, &["status.sidecar.test", "admin.sidecar.test"]);
    let sidecar = Sidecar::anywhere("no-config");
    let out = meshwait_with_etc(Some(&hosts), None)
        .args([
            "ready",
            "--wait",
            "--interval",
            "20ms",
            "--log-format",
            "json",
        ])
        .args(["--hint-after", "200ms", "--timeout", "1s"])
        .args([
            "--ready-url",
            &format!(
                "http://status.sidecar.test:{}/healthz/ready",
                sidecar.status
            ),
            "--admin-url",
            &format!("http://admin.sidecar.test:{}", sidecar.admin),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
    let lines = json_lines(&String::from_utf8_lossy(&out.stderr));
    let hints: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["severity"] == "WARNING" && l.get("hint").is_some())
        .collect();
    assert_eq!(hints.len(), 1, "{lines:#?}");
    assert_eq!(hints[0]["hint"], "no-config-from-istiod", "{}", hints[0]);
    let last = lines.last().unwrap();
    assert_eq!(last["hint"], "no-config-from-istiod", "{last}");
    let message = last["message"].as_str().unwrap();
    assert!(
        message.contains("Envoy's admin: state PRE_INITIALIZING; cds 0 successful, 0 rejected"),
        "{message}"
    );
}

#[test]
fn a_proxy_listener_appearing_moves_the_next_probe_forward() {
    let server = ReadyServer::start("127.0.0.1:0", vec![], Reply::Status(503, ISTIO_503));
    // A free port of the test's own stands for the proxy's capture port (15001 in Istio).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    // With a 30 s interval the schedule alone would probe a second time only after 30 s.
    let mut child = spawn(gated_with(
        &server.url(),
        &["--interval", "30s", "--watch-listener", &port],
        "exit 0",
    ));
    assert!(eventually(Duration::from_secs(5), || server.served().len() == 1));
    std::thread::sleep(Duration::from_millis(300)); // looks that find the port unused
    // Ready, then listening, as Envoy goes live.
    server.set(Reply::Status(200, ""));
    let _proxy = std::net::TcpListener::bind(format!("127.0.0.1:{port}")).unwrap();
    let flipped = std::time::Instant::now();
    assert_eq!(
        wait_bounded(&mut child, Duration::from_secs(20)).code(),
        Some(0)
    );
    assert!(
        flipped.elapsed() < Duration::from_secs(5),
        "the app started {:?} after the listener appeared",
        flipped.elapsed()
    );
    assert_eq!(
        server.served().len(),
        2,
        "one probe at the start, one at the listener"
    );
}

/// meshwait's JSON log lines, each parsed (a line that does not parse fails the test).
fn json_lines(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn a_lasting_symptom_is_named_once_and_again_in_the_timeout_message() {
    let server = ReadyServer::start("127.0.0.1:0", vec![], Reply::Status(503, ISTIO_503));
    let mut cmd = gated_with(
        &server.url(),
        &[
            "--log-format",
            "json",
            "--hint-after",
            "300ms",
            "--timeout",
            "1500ms",
            "--admin-url",
            "none",
        ],
        "exit 0",
    );
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(69));
    let lines = json_lines(&String::from_utf8_lossy(&out.stderr));
    let hints: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l.get("hint").is_some() && l["severity"] == "WARNING")
        .collect();
    assert_eq!(hints.len(), 1, "one hint per symptom: {lines:#?}");
    let hint = hints[0];
    assert_eq!(hint["hint"], "config-rejected");
    assert_eq!(hint["component"], "gate");
    assert!(hint["elapsed_ms"].as_u64().unwrap() >= 300, "{hint}");
    assert!(hint["attempt"].as_u64().unwrap() > 1, "{hint}");
    let message = hint["message"].as_str().unwrap();
    assert!(
        message.contains("Envoy rejected configuration it was sent (cds 1 successful, 0 rejected; lds 0 successful, 1 rejected)"),
        "{message}"
    );
    assert!(message.contains("EnvoyFilter"), "{message}");
    let last = lines.last().unwrap();
    assert_eq!(last["severity"], "ERROR");
    assert_eq!(last["exit_code"], 69);
    assert_eq!(last["hint"], "config-rejected");
    let message = last["message"].as_str().unwrap();
    assert!(
        message.contains("likely cause: Envoy rejected"),
        "{message}"
    );
    // Every line carries the time as RFC 3339 in UTC.
    for line in &lines {
        let time = line["time"].as_str().unwrap();
        assert!(
            time.len() >= 20 && time.ends_with('Z') && &time[10..11] == "T",
            "{time}"
        );
    }
}

/// Guards the manual's promise (docs/gate.md) about the waiting lines: one at the first failure,
/// one when the reason changes (at most once a second), otherwise every 5 s; each with the status it names.
/// And a new symptom's hint waits its own `--hint-after`, however long the previous one lasted.
#[test]
fn waiting_lines_come_at_the_first_failure_and_at_a_change_and_a_new_symptom_waits_for_its_hint() {
    let server = ReadyServer::start("127.0.0.1:0", vec![], Reply::Status(503, ""));
    let mut cmd = gated_with(
        &server.url(),
        &[
            "--log-format",
            "json",
            "--hint-after",
            "1s",
            "--admin-url",
            "none",
        ],
        "exit 0",
    );
    cmd.stderr(std::process::Stdio::piped());
    let mut child = spawn(cmd);
    std::thread::sleep(Duration::from_millis(2500));
    server.set(Reply::Status(404, ""));
    std::thread::sleep(Duration::from_millis(1700));
    assert_eq!(turn_ready_and_wait(&server, &mut child), Some(0));
    let lines = json_lines(&stderr_of(&mut child));
    let waiting: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("waiting for the proxy"))
        })
        .collect();
    assert_eq!(waiting.len(), 2, "{waiting:#?}");
    assert_eq!(waiting[0]["message"], "waiting for the proxy: HTTP 503");
    assert_eq!(waiting[0]["status"], 503);
    assert_eq!(waiting[1]["message"], "waiting for the proxy: HTTP 404");
    assert_eq!(waiting[1]["status"], 404);
    let changed = waiting[1]["elapsed_ms"].as_u64().unwrap();
    assert!(changed >= 2400, "{:#?}", waiting[1]);
    let hint = |id: &str| {
        lines
            .iter()
            .find(|l| l["hint"] == id)
            .unwrap_or_else(|| panic!("no {id} hint: {lines:#?}"))["elapsed_ms"]
            .as_u64()
            .unwrap()
    };
    assert!(hint("istio-not-ready") >= 1000);
    let second = hint("wrong-endpoint");
    assert!(
        second >= changed + 900,
        "the 404's hint came {}ms after the 404 began",
        second - changed
    );
}

#[test]
fn an_empty_503_is_explained_from_envoys_admin_while_gating() {
    let sidecar = Sidecar::anywhere("no-config");
    let ready = format!("http://127.0.0.1:{}/healthz/ready", sidecar.status);
    let admin = format!("http://127.0.0.1:{}", sidecar.admin);
    let mut cmd = gated_with(
        &ready,
        &[
            "--log-format",
            "json",
            "--hint-after",
            "200ms",
            "--timeout",
            "1s",
            "--admin-url",
            &admin,
        ],
        "exit 0",
    );
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(69));
    let lines = json_lines(&String::from_utf8_lossy(&out.stderr));
    let hint = lines
        .iter()
        .find(|l| l["severity"] == "WARNING" && l.get("hint").is_some())
        .unwrap_or_else(|| panic!("no hint: {lines:#?}"));
    assert_eq!(hint["hint"], "no-config-from-istiod", "{hint}");
    assert!(
        hint["message"]
            .as_str()
            .unwrap()
            .contains("Envoy failed to reach the xDS server 5 times"),
        "{hint}"
    );
    let last = lines.last().unwrap();
    assert_eq!(last["hint"], "no-config-from-istiod");
    let message = last["message"].as_str().unwrap();
    assert!(
        message.contains("Envoy's admin: state PRE_INITIALIZING; cds 0 successful, 0 rejected"),
        "{message}"
    );
}

#[test]
fn a_refused_status_port_points_at_injection_and_probe_timeouts_at_a_hung_sidecar() {
    // Nothing listens: bind a port and close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/healthz/ready");
    let out = gated_with(&url, &["--timeout", "300ms"], "exit 0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap();
    assert!(last.contains("hint=istio-not-injected"), "{last}");
    assert!(last.contains("istio-injection=enabled"), "{last}");
    let out = gated_with(&url, &["--timeout", "300ms", "--mesh", "linkerd"], "exit 0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("linkerd.io/inject: enabled"), "{err}");

    let server = ReadyServer::start("127.0.0.1:0", vec![], Reply::Hang);
    let out = gated_with(
        &server.url(),
        &[
            "--timeout",
            "1s",
            "--request-timeout",
            "100ms",
            "--hint-after",
            "300ms",
        ],
        "exit 0",
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let hints: Vec<&str> = err
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains("hint=status-server-hung"))
        .collect();
    assert_eq!(hints.len(), 1, "{err}");
    assert!(
        hints[0].contains("hung or starved of CPU, not absent"),
        "{err}"
    );
}

#[test]
fn a_single_probe_names_the_likely_cause() {
    let server = ReadyServer::start("127.0.0.1:0", vec![], Reply::Status(503, "not ready\n"));
    let out = meshwait()
        .args(["ready", "--mesh", "linkerd", "--ready-url", &server.url()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hint=linkerd-not-ready"), "{err}");
    assert!(err.contains("linkerd check --proxy"), "{err}");
}

/// Guards "only 2xx is ready": a redirect (which meshwait never follows) is not ready, in the
/// gate and in `meshwait ready` (a mutant that took any status below 400 passed every test).
#[test]
fn a_redirect_is_not_ready() {
    let server = ReadyServer::start(
        "127.0.0.1:0",
        vec![Reply::Status(302, ""), Reply::Status(302, "")],
        Reply::Status(200, ""),
    );
    let dir = scratch_dir("redirect");
    let mark = dir.join("started");
    let mut child = spawn(gated(&server.url(), &format!("touch {}", mark.display())));
    let status = wait_bounded(&mut child, Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    assert!(mark.exists());
    assert_eq!(
        server.served(),
        [
            Reply::Status(302, ""),
            Reply::Status(302, ""),
            Reply::Status(200, "")
        ],
        "the app started before the 200"
    );
    let once = ReadyServer::start("127.0.0.1:0", vec![], Reply::Status(302, ""));
    let out = meshwait()
        .args(["ready", "--ready-url", &once.url()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("not ready"));
}

/// `meshwait ready` against `server`, `runs` times: the outputs of those that did not exit 0.
fn not_ready_runs(server: &ReadyServer, runs: usize) -> Vec<String> {
    (0..runs)
        .filter_map(|_| {
            let out = meshwait()
                .args(["ready", "--ready-url", &server.url()])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.code() != Some(0)).then_some(text)
        })
        .collect()
}

#[test]
fn a_status_server_answering_before_the_request_is_always_ready() {
    // The answer can arrive before the request is written: a probe must take it as the answer,
    // however the race goes. One run in ten or more lost it before.
    let server = ReadyServer::start("127.0.0.1:0", vec![], Reply::Early(200));
    let failed = not_ready_runs(&server, 100);
    assert!(
        failed.is_empty(),
        "{} of 100 not ready: {failed:?}",
        failed.len()
    );
    assert_eq!(server.requests().len(), 100, "every probe sent its request");
    // The same when the answer is 503: never a connection error instead of the status.
    server.set(Reply::Early(503));
    let failed = not_ready_runs(&server, 30);
    assert_eq!(failed.len(), 30);
    let wrong: Vec<&String> = failed.iter().filter(|t| !t.contains("HTTP 503")).collect();
    assert!(wrong.is_empty(), "{wrong:?}");
}

#[test]
fn a_status_server_answering_and_resetting_at_once_is_always_ready() {
    // An abortive close right after the answer: the reset can come before the request is
    // written, or even before the connection is first looked at. What was answered still counts.
    let server = ReadyServer::start("127.0.0.1:0", vec![], Reply::EarlyReset(200));
    let failed = not_ready_runs(&server, 100);
    assert!(
        failed.is_empty(),
        "{} of 100 not ready: {failed:?}",
        failed.len()
    );
}

#[test]
fn a_status_server_that_answers_and_never_reads_is_ready() {
    // The request fits in the socket's buffers, so the answer is read whether or not the server
    // ever reads what was sent; --request-timeout bounds anything that would wait on it.
    let server = ReadyServer::start("127.0.0.1:0", vec![], Reply::EarlyDeaf(200));
    let failed = not_ready_runs(&server, 30);
    assert!(
        failed.is_empty(),
        "{} of 30 not ready: {failed:?}",
        failed.len()
    );
}

#[test]
fn in_an_ambient_pod_the_istio_gate_names_ambient_mode_and_the_ambient_preset_does_not_wait() {
    // ztunnel's in-pod listeners (15001, 15006, 15008) and no status port: the refused gate must
    // say that this is ambient mode, where no sidecar will ever come, not point at injection.
    if !root_or_skip(
        "in_an_ambient_pod_the_istio_gate_names_ambient_mode_and_the_ambient_preset_does_not_wait",
        &["--net"],
    ) {
        return;
    }
    let ns = Netns::new();
    let _ztunnel = Listeners::start(&[15001, 15006, 15008], &ns);
    let mut cmd = meshwait();
    cmd.args([
        "--mesh",
        "istio",
        "--timeout",
        "500ms",
        "--interval",
        "50ms",
    ])
    .args(["--", "sh", "-c", "exit 0"]);
    ns.enter(&mut cmd);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(69));
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap();
    assert!(last.contains("hint=istio-ambient-pod"), "{last}");
    assert!(last.contains("use --mesh ambient"), "{last}");
    assert!(!err.contains("istio-injection=enabled"), "{err}");

    // The one-shot probe says it too.
    let mut cmd = meshwait();
    cmd.args(["ready", "--mesh", "istio"]);
    ns.enter(&mut cmd);
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("hint=istio-ambient-pod"), "{err}");

    // --mesh ambient has no gate: the app starts at once, and its status is meshwait's.
    let mut cmd = meshwait();
    cmd.args(["--mesh", "ambient", "--", "sh", "-c", "exit 3"]);
    ns.enter(&mut cmd);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("waiting for the proxy"), "{err}");
}

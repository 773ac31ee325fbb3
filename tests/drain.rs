//! Draining: real sockets in a network namespace of the test's own (so nothing else on the
//! machine is counted), a real app, real peers. Needs root for the namespace and for a peer
//! running as the proxy's UID.

// Tests state what they expect by unwrapping and panicking; the lints against both are for
// meshwait itself, which usually runs as PID 1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

/// An app on 127.0.0.1:APP_PORT inside its own namespace; ports repeat safely across tests.
const APP_PORT: u16 = 8080;
const OTHER_PORT: u16 = 9090;

fn root_or_skip(test: &str) -> bool {
    common::root_or_skip(test, &["--net"])
}

/// CLOCK_MONOTONIC in seconds, the clock the Python helpers print.
fn now() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

struct Pod {
    ns: Netns,
    events: PathBuf,
}

impl Pod {
    fn new(tag: &str) -> Pod {
        let dir = scratch_dir(tag);
        Pod {
            ns: Netns::new(),
            events: dir.join("events"),
        }
    }

    fn app_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            python(),
            &helper("drainapp.py"),
            "--port",
            &APP_PORT.to_string(),
            "--events",
            self.events.to_str().unwrap(),
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        args.extend(extra.iter().map(ToString::to_string));
        args
    }

    /// meshwait (no readiness gate) running the app, with `flags` before `--`.
    fn meshwait(&self, flags: &[&str], app: &[&str]) -> Child {
        let mut cmd = meshwait();
        cmd.arg("--no-wait")
            .args(flags)
            .arg("--")
            .args(self.app_args(app));
        self.ns.enter(&mut cmd);
        let child = spawn(cmd);
        self.wait_event("listening");
        child
    }

    /// The app alone, not under meshwait; killed when dropped.
    fn bare_app(&self, app: &[&str]) -> Peer {
        let args = self.app_args(app);
        let mut cmd = Command::new(&args[0]);
        cmd.args(&args[1..]).stdin(Stdio::null());
        self.ns.enter(&mut cmd);
        cmd.stdout(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let lines = Lines::from(&mut child);
        self.wait_event("listening");
        Peer { child, lines }
    }

    fn peer(&self, args: &[&str], uid: Option<u32>) -> Peer {
        self.peer_at("127.0.0.1", args, uid)
    }

    /// A peer whose `blackhole` and `call` use `host`.
    fn peer_at(&self, host: &str, args: &[&str], uid: Option<u32>) -> Peer {
        let mut cmd = Command::new(python());
        cmd.arg(helper("drainpeer.py"))
            .env("PEER_HOST", host)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(uid) = uid {
            cmd.env("PEER_UID", uid.to_string());
        }
        self.ns.enter(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let lines = Lines::from(&mut child);
        Peer { child, lines }
    }

    /// meshwait's `drain` or `conns` inside the namespace.
    fn subcommand(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = meshwait();
        cmd.args(args);
        self.ns.enter(&mut cmd);
        cmd.output().unwrap()
    }

    /// The time of the first event line starting with `name`.
    fn event(&self, name: &str) -> Option<f64> {
        let text = std::fs::read_to_string(&self.events).unwrap_or_default();
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|t| t.parse().ok())
    }

    /// The times of every event line starting with `name`.
    fn events(&self, name: &str) -> Vec<f64> {
        let text = std::fs::read_to_string(&self.events).unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect()
    }

    fn wait_event(&self, name: &str) -> f64 {
        assert!(
            eventually(Duration::from_secs(10), || self.event(name).is_some()),
            "no '{name}' event from the app"
        );
        self.event(name).unwrap()
    }
}

struct Peer {
    child: Child,
    lines: Lines,
}

impl Peer {
    /// Waits for a line starting with `word`; returns its words and its time.
    fn expect(&self, word: &str, limit: Duration) -> (Vec<String>, f64) {
        let line = self
            .lines
            .next(limit)
            .unwrap_or_else(|| panic!("peer printed nothing within {limit:?}, wanted '{word}'"));
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        assert_eq!(words[0], word, "peer said: {line}");
        let t = words.last().unwrap().parse().unwrap();
        (words, t)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn port() -> String {
    APP_PORT.to_string()
}

#[test]
fn slow_request_delays_the_stop_signal_and_idle_keepalive_does_not() {
    if !root_or_skip("slow_request_delays_the_stop_signal") {
        return;
    }
    let pod = Pod::new("slow");
    let mut mw = pod.meshwait(&["--quiet-window", "200ms", "--drain-timeout", "10s"], &[]);
    let idle = pod.peer(&["keepalive", &port()], None);
    idle.expect("idle", Duration::from_secs(5));
    let slow = pod.peer(&["request", &port(), "/slow/2500"], None);
    pod.wait_event("request /slow");
    let signalled = now();
    send(mw.id(), libc::SIGTERM);
    // Other signals still reach the app while the stop signal is held.
    std::thread::sleep(Duration::from_millis(300));
    send(mw.id(), libc::SIGUSR1);
    pod.wait_event("USR1");
    assert!(pod.event("TERM").is_none(), "SIGTERM was not held");
    let (words, _) = slow.expect("done", Duration::from_secs(10));
    assert_eq!(words[1..3], ["200", "12"], "the slow answer arrived whole");
    let status = wait_bounded(&mut mw, Duration::from_secs(10));
    let stderr = stderr_of(&mut mw);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let answered = pod.event("answered /slow").expect("answered");
    let term = pod.event("TERM").expect("the app got SIGTERM");
    assert!(
        term > answered,
        "stop signal at {term}, before the answer went out at {answered}\n{stderr}"
    );
    assert!(term - signalled > 2.0, "held only {:.3}s", term - signalled);
    // The idle keep-alive connection stayed open throughout and did not hold the pod: the
    // signal followed the answer by the quiet window plus a poll or two.
    assert!(
        term - answered < 1.0,
        "stop signal came {:.3}s after the answer\n{stderr}",
        term - answered
    );
    assert!(stderr.contains("holding it"), "{stderr}");
}

#[test]
fn a_request_right_after_an_answer_on_the_same_connection_is_held() {
    if !root_or_skip("a_request_right_after_an_answer_on_the_same_connection_is_held") {
        return;
    }
    // The second request follows the first answer within microseconds, inside one kernel tick,
    // as on a busy pooled connection: tcp_info's times tie and only the counters tell. The
    // client is the proxy (UID 1337), as in a pod, so only the app's own socket can hold.
    let pod = Pod::new("reuse");
    let mut mw = pod.meshwait(&["--quiet-window", "200ms", "--drain-timeout", "10s"], &[]);
    let slow = pod.peer(&["reuse", &port(), "/slow/2000"], Some(1337));
    pod.wait_event("request /slow");
    std::thread::sleep(Duration::from_millis(600));
    send(mw.id(), libc::SIGTERM);
    let (words, _) = slow.expect("done", Duration::from_secs(10));
    assert_eq!(words[1], "200");
    wait_bounded(&mut mw, Duration::from_secs(10));
    let term = pod.event("TERM").unwrap();
    assert!(
        term > pod.event("answered /slow").unwrap(),
        "{}",
        stderr_of(&mut mw)
    );
}

#[test]
fn an_ipv6_request_in_flight_blocks_the_drain() {
    if !root_or_skip("an_ipv6_request_in_flight_blocks_the_drain") {
        return;
    }
    let pod = Pod::new("ipv6");
    let _app = pod.bare_app(&["--bind", "::1"]);
    let _slow = pod.peer(&["request6", &port(), "/slow/20000"], None);
    pod.wait_event("request /slow");
    let out = pod.subcommand(&["drain", "--timeout", "0", "--quiet-window", "0"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&format!("in :{APP_PORT}")), "{stdout}");
    let table = String::from_utf8_lossy(&pod.subcommand(&["conns"]).stdout).into_owned();
    assert!(table.contains(&format!("[::1]:{APP_PORT}")), "{table}");
}

#[test]
fn streaming_response_keeps_the_app_busy() {
    if !root_or_skip("streaming_response_keeps_the_app_busy") {
        return;
    }
    let pod = Pod::new("stream");
    // Default quiet window (1s) against chunks every 300 ms.
    let mut mw = pod.meshwait(&["--drain-timeout", "10s"], &[]);
    let stream = pod.peer(&["request", &port(), "/stream/8/300"], None);
    pod.wait_event("request /stream");
    send(mw.id(), libc::SIGTERM);
    let (words, _) = stream.expect("done", Duration::from_secs(10));
    assert_eq!(words[1], "200");
    let status = wait_bounded(&mut mw, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    let answered = pod.event("answered /stream").unwrap();
    let term = pod.event("TERM").unwrap();
    assert!(
        term > answered,
        "stop signal {:.3}s before the stream ended",
        answered - term
    );
}

#[test]
fn unanswered_outbound_call_is_cut_at_the_drain_timeout() {
    if !root_or_skip("unanswered_outbound_call_is_cut_at_the_drain_timeout") {
        return;
    }
    let pod = Pod::new("blackhole");
    // The remote end runs as the proxy's UID, so only the app's own outbound socket blocks.
    let remote = pod.peer(&["blackhole", &OTHER_PORT.to_string()], Some(1337));
    remote.expect("listening", Duration::from_secs(5));
    let mut mw = pod.meshwait(
        &["--drain-timeout", "1500ms"],
        &["--call", &OTHER_PORT.to_string()],
    );
    pod.wait_event("called");
    let signalled = now();
    send(mw.id(), libc::SIGTERM);
    let status = wait_bounded(&mut mw, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    let stderr = stderr_of(&mut mw);
    let held = pod.event("TERM").unwrap() - signalled;
    assert!((1.4..3.0).contains(&held), "held {held:.3}s\n{stderr}");
    assert!(stderr.contains("drain timeout"), "{stderr}");
    assert!(
        stderr.contains(&format!("out :{OTHER_PORT}")),
        "the log names the port it waited for: {stderr}"
    );
}

#[test]
fn sockets_of_the_proxy_uid_do_not_count() {
    if !root_or_skip("sockets_of_the_proxy_uid_do_not_count") {
        return;
    }
    let pod = Pod::new("uid");
    // A busy connection whose two ends both belong to UID 1337 (a request nobody answers).
    let pair = pod.peer(&["pair", &OTHER_PORT.to_string()], Some(1337));
    pair.expect("called", Duration::from_secs(5));
    let istio = pod.subcommand(&["drain", "--timeout", "0", "--quiet-window", "0"]);
    assert_eq!(
        istio.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&istio.stdout)
    );
    // The same sockets when the proxy is said to be another user: now they block.
    let other = pod.subcommand(&[
        "drain",
        "--timeout",
        "0",
        "--quiet-window",
        "0",
        "--proxy-uid",
        "4242",
    ]);
    let stdout = String::from_utf8_lossy(&other.stdout);
    assert_eq!(other.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&format!(":{OTHER_PORT}")), "{stdout}");
}

#[test]
fn drain_until_app_exit_returns_when_the_listener_closes() {
    if !root_or_skip("drain_until_app_exit_returns_when_the_listener_closes") {
        return;
    }
    let pod = Pod::new("appexit");
    let app = pod.bare_app(&[]);
    let early = pod.subcommand(&["drain", "--until", "app-exit", "--timeout", "200ms"]);
    let stdout = String::from_utf8_lossy(&early.stdout);
    assert_eq!(early.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&format!("in :{APP_PORT}")), "{stdout}");
    let mut cmd = meshwait();
    cmd.args(["drain", "--until", "app-exit", "--timeout", "10s"]);
    pod.ns.enter(&mut cmd);
    let mut waiting = spawn(cmd);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "returned with the listener open"
    );
    send(app.child.id(), libc::SIGUSR2);
    let status = wait_bounded(&mut waiting, Duration::from_secs(3));
    let returned = now();
    assert_eq!(status.code(), Some(0), "{}", stderr_of(&mut waiting));
    let closed = pod.wait_event("closed-listener");
    assert!(returned >= closed);
    assert!(
        returned - closed < 1.0,
        "returned {:.3}s after the close",
        returned - closed
    );
}

#[test]
fn drain_modes_idle_and_closed_differ_on_an_idle_connection() {
    if !root_or_skip("drain_modes_idle_and_closed_differ_on_an_idle_connection") {
        return;
    }
    let pod = Pod::new("modes");
    let _app = pod.bare_app(&[]);
    let idle = pod.peer(&["keepalive", &port()], None);
    idle.expect("idle", Duration::from_secs(5));
    let out = pod.subcommand(&["drain", "--quiet-window", "0", "--timeout", "2s"]);
    assert_eq!(out.status.code(), Some(0), "idle keep-alive is drained");
    let out = pod.subcommand(&["drain", "--until", "closed", "--timeout", "300ms"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.starts_with("not drained after"), "{stdout}");
    // /proc/net/tcp cannot show the connection idle: it counts as busy, and the log says why.
    let out = pod.subcommand(&["drain", "--sockets", "proc", "--timeout", "300ms"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/proc/net/tcp"), "{stderr}");
    drop(idle);
}

/// Guards the SIGINT that ends a hold: the app sees the held SIGTERM *and* the SIGINT, as it
/// would without meshwait (a mutant that forwarded only the held signal passed every test).
#[test]
fn a_sigint_that_ends_a_hold_reaches_the_app_too() {
    if !root_or_skip("a_sigint_that_ends_a_hold_reaches_the_app_too") {
        return;
    }
    let pod = Pod::new("int-ends-hold");
    let mut mw = pod.meshwait(&["--drain-timeout", "20s"], &["--terms", "2"]);
    let _slow = pod.peer(&["request", &port(), "/slow/20000"], None);
    pod.wait_event("request /slow");
    send(mw.id(), libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    assert!(pod.events("TERM").is_empty(), "the first SIGTERM was held");
    send(mw.id(), libc::SIGINT);
    assert!(
        eventually(Duration::from_secs(3), || !pod.events("INT").is_empty()
            && !pod.events("TERM").is_empty()),
        "app saw TERM {:?} and INT {:?}",
        pod.events("TERM"),
        pod.events("INT")
    );
    // The app ends on its second SIGTERM, which is no longer held.
    send(mw.id(), libc::SIGTERM);
    assert_eq!(
        wait_bounded(&mut mw, Duration::from_secs(5)).code(),
        Some(0)
    );
}

/// Guards which signals are held: only the drain's triggers (SIGTERM here). A SIGUSR1 while a
/// request is in flight reaches the app at once, and the app keeps serving.
#[test]
fn signals_other_than_the_trigger_are_not_held() {
    if !root_or_skip("signals_other_than_the_trigger_are_not_held") {
        return;
    }
    let pod = Pod::new("usr1-passes");
    let mut mw = pod.meshwait(&["--drain-timeout", "20s"], &[]);
    let _slow = pod.peer(&["request", &port(), "/slow/20000"], None);
    pod.wait_event("request /slow");
    let sent = now();
    send(mw.id(), libc::SIGUSR1);
    assert!(
        eventually(Duration::from_secs(3), || pod.event("USR1").is_some()),
        "SIGUSR1 was held"
    );
    let took = pod.event("USR1").unwrap() - sent;
    assert!(
        took < 1.0,
        "SIGUSR1 reached the app {took:.3}s after it was sent"
    );
    assert!(pod.events("TERM").is_empty());
    // A second stop request skips the hold, so the app ends and its output closes.
    send(mw.id(), libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    send(mw.id(), libc::SIGTERM);
    wait_bounded(&mut mw, Duration::from_secs(5));
    let stderr = stderr_of(&mut mw);
    assert_eq!(stderr.matches("holding it").count(), 1, "{stderr}");
}

/// Guards "only the first SIGTERM is held": an app that outlives its first stop signal gets the
/// next one at once, even with a request in flight (a mutant that held every SIGTERM passed
/// every test).
#[test]
fn a_later_sigterm_is_forwarded_at_once() {
    if !root_or_skip("a_later_sigterm_is_forwarded_at_once") {
        return;
    }
    let pod = Pod::new("later-term");
    let mut mw = pod.meshwait(
        &["--drain-timeout", "20s", "--quiet-window", "0"],
        &["--terms", "2"],
    );
    let first = pod.peer(&["request", &port(), "/slow/700"], None);
    pod.wait_event("request /slow/700");
    send(mw.id(), libc::SIGTERM);
    first.expect("done", Duration::from_secs(5));
    assert!(
        eventually(Duration::from_secs(3), || pod.events("TERM").len() == 1),
        "the held SIGTERM was passed on once the request ended"
    );
    let _second = pod.peer(&["request", &port(), "/slow/20000"], None);
    pod.wait_event("request /slow/20000");
    let sent = now();
    send(mw.id(), libc::SIGTERM);
    assert_eq!(
        wait_bounded(&mut mw, Duration::from_secs(5)).code(),
        Some(0)
    );
    let terms = pod.events("TERM");
    assert_eq!(terms.len(), 2, "{terms:?}");
    assert!(
        terms[1] - sent < 0.2,
        "the second SIGTERM reached the app {:.3}s after it was sent",
        terms[1] - sent
    );
}

/// Guards the preStop hook's stop: `meshwait drain` ends with 128+N on a stop signal (the kubelet
/// gave up on the hook, or a user pressed Ctrl-C) instead of waiting out its timeout.
#[test]
fn the_drain_subcommand_ends_on_a_stop_signal() {
    if !root_or_skip("the_drain_subcommand_ends_on_a_stop_signal") {
        return;
    }
    let pod = Pod::new("drain-stop");
    let busy = pod.peer(&["pair", &port()], None);
    busy.expect("called", Duration::from_secs(5));
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let mut cmd = meshwait();
        cmd.args(["drain", "--until", "closed", "--timeout", "20s"])
            .stderr(Stdio::piped())
            .stdout(Stdio::null());
        pod.ns.enter(&mut cmd);
        let mut drain = spawn(cmd);
        std::thread::sleep(Duration::from_millis(300));
        send(drain.id(), signal);
        let status = wait_bounded(&mut drain, Duration::from_secs(5));
        assert_eq!(status.code(), Some(code), "{}", stderr_of(&mut drain));
    }
    drop(busy);
}

/// Guards the drain subcommand's schedule: a signal that does not stop it must not trigger a
/// scan (before, every such signal rescanned, so a flood of them became a busy loop).
#[test]
fn other_signals_do_not_make_the_drain_subcommand_rescan() {
    if !root_or_skip("other_signals_do_not_make_the_drain_subcommand_rescan") {
        return;
    }
    let pod = Pod::new("rescan");
    let busy = pod.peer(&["pair", &port()], None);
    busy.expect("called", Duration::from_secs(5));
    let mut cmd = meshwait();
    cmd.args([
        "drain",
        "--until",
        "closed",
        "--timeout",
        "1500ms",
        "--log-level",
        "trace",
    ])
    .stderr(Stdio::piped())
    .stdout(Stdio::null());
    pod.ns.enter(&mut cmd);
    let mut drain = spawn(cmd);
    std::thread::sleep(Duration::from_millis(300));
    // Real-time signals queue one instance each, so every one of them is a separate wake-up.
    let rt = libc::SIGRTMIN() + 1;
    for _ in 0..200 {
        send(drain.id(), rt);
    }
    let status = wait_bounded(&mut drain, Duration::from_secs(10));
    let stderr = stderr_of(&mut drain);
    assert_eq!(
        status.code(),
        Some(1),
        "still busy at the timeout: {stderr}"
    );
    let scans = stderr.matches("scanned the sockets").count();
    // About 15 at one scan per 100 ms; 200 signals would have made over 200.
    assert!((5..60).contains(&scans), "{scans} scans: {stderr}");
    drop(busy);
}

#[test]
fn a_second_stop_request_skips_the_wait() {
    if !root_or_skip("a_second_stop_request_skips_the_wait") {
        return;
    }
    for second in [libc::SIGTERM, libc::SIGINT] {
        let pod = Pod::new("second");
        let mut mw = pod.meshwait(&["--drain-timeout", "20s"], &[]);
        let slow = pod.peer(&["request", &port(), "/slow/20000"], None);
        pod.wait_event("request /slow");
        send(mw.id(), libc::SIGTERM);
        std::thread::sleep(Duration::from_millis(500));
        assert!(pod.event("TERM").is_none(), "the first SIGTERM was held");
        let again = now();
        send(mw.id(), second);
        let status = wait_bounded(&mut mw, Duration::from_secs(5));
        assert_eq!(status.code(), Some(0));
        let term = pod.event("TERM").unwrap();
        assert!(
            term - again < 0.5,
            "signal {second}: app stopped {:.3}s later",
            term - again
        );
        // The app was stopped mid-request, as asked.
        slow.expect("broken", Duration::from_secs(5));
        // And the log says why the hold ended early.
        let stderr = stderr_of(&mut mw);
        assert!(
            stderr.contains("while holding: passing SIGTERM on now"),
            "{stderr}"
        );
    }
}

#[test]
fn zero_drain_timeout_forwards_at_once_and_shutdown_delay_keeps_serving() {
    if !root_or_skip("zero_drain_timeout_forwards_at_once") {
        return;
    }
    let pod = Pod::new("nodrain");
    let mut mw = pod.meshwait(&["--drain-timeout", "0"], &[]);
    let slow = pod.peer(&["request", &port(), "/slow/20000"], None);
    pod.wait_event("request /slow");
    let signalled = now();
    send(mw.id(), libc::SIGTERM);
    wait_bounded(&mut mw, Duration::from_secs(5));
    assert!(pod.event("TERM").unwrap() - signalled < 0.5);
    slow.expect("broken", Duration::from_secs(5));
    // Not a hold of zero length either: no hold at all.
    let stderr = stderr_of(&mut mw);
    assert!(!stderr.contains("holding it"), "{stderr}");

    let pod = Pod::new("delay");
    let mut mw = pod.meshwait(&["--shutdown-delay", "1s", "--drain-timeout", "0"], &[]);
    let signalled = now();
    send(mw.id(), libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    // Still serving during the delay (endpoints are being withdrawn).
    let fresh = pod.peer(&["request", &port(), "/fast"], None);
    fresh.expect("done", Duration::from_secs(2));
    wait_bounded(&mut mw, Duration::from_secs(5));
    let held = pod.event("TERM").unwrap() - signalled;
    assert!((0.95..2.0).contains(&held), "held {held:.3}s");
}

#[test]
fn conns_lists_what_the_drain_sees() {
    if !root_or_skip("conns_lists_what_the_drain_sees") {
        return;
    }
    let pod = Pod::new("conns");
    let _app = pod.bare_app(&[]);
    let idle = pod.peer(&["keepalive", &port()], None);
    idle.expect("idle", Duration::from_secs(5));
    let slow = pod.peer(&["request", &port(), "/slow/20000"], None);
    pod.wait_event("request /slow");
    let proxy = pod.peer(&["pair", &OTHER_PORT.to_string()], Some(1337));
    proxy.expect("called", Duration::from_secs(5));

    let out = pod.subcommand(&["conns", "--quiet-window", "0"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].starts_with("STATE"), "{table}");
    // Socket rows only: not the header, nor the blank line and what follows it (the summary, then
    // the sidecar's part).
    let blank = rows
        .iter()
        .position(|r| r.is_empty())
        .expect("a blank line");
    let sockets = &rows[1..blank];
    let has = |needle: &str, n: usize| {
        let found = sockets.iter().filter(|r| r.contains(needle)).count();
        assert_eq!(found, n, "{n} rows with '{needle}' expected:\n{table}");
    };
    has("busy: request awaiting its answer", 1);
    has("busy: awaiting the peer's reply", 1);
    has(" idle", 2);
    has(" listen ", 1);
    has(" proxy ", 3);
    assert!(
        rows[blank + 1]
            .starts_with("2 app connections busy, 2 idle; 1 app listeners; 3 proxy sockets"),
        "{table}"
    );
    // Istio's preset reads Envoy's admin, which this namespace does not have.
    assert!(
        rows[blank + 3].starts_with("sidecar: http://localhost:15000/clusters unreadable"),
        "{table}"
    );

    let out = pod.subcommand(&["conns", "--json", "--quiet-window", "0"]);
    assert_eq!(out.status.code(), Some(0));
    let check = Command::new(python())
        .args([
            "-c",
            "import json,sys; d=json.load(sys.stdin); s=d['summary']; \
             print(len(d['sockets']), s['busy'], s['idle'], s['app_listeners'], s['proxy_sockets'], \
             '|'.join(sorted(x['why'] for x in d['sockets'] if x['status']=='busy')))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let mut check = check;
    check.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let parsed = check.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&parsed.stdout).trim(),
        "8 2 2 1 3 awaiting the peer's reply|request awaiting its answer",
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    drop((idle, slow, proxy));
}

#[test]
fn ambient_sets_ztunnels_sockets_aside_by_port_and_its_tunnels_to_peers() {
    // ztunnel's sockets in the pod belong to root, as a root app's would: the ambient preset
    // tells them apart by port. Its listeners (15001, 15006, 15053 here) and its HBONE tunnel to
    // a peer's 15008 (on an address that is not loopback) are the proxy's; the app's request in
    // flight and the test's own client end are not.
    if !root_or_skip("ambient_sets_ztunnels_sockets_aside_by_port_and_its_tunnels_to_peers") {
        return;
    }
    let pod = Pod::new("ambient");
    let mut ip = Command::new("ip");
    ip.args(["addr", "add", "10.1.2.3/32", "dev", "lo"]);
    pod.ns.enter(&mut ip);
    assert!(ip.status().unwrap().success(), "ip addr add");
    let _ztunnel = Listeners::start(&[15001, 15006, 15053], &pod.ns);
    let tunnel = pod.peer_at("10.1.2.3", &["pair", "15008"], None);
    tunnel.expect("called", Duration::from_secs(5));
    let _app = pod.bare_app(&[]);
    let slow = pod.peer(&["request", &port(), "/slow/20000"], None);
    pod.wait_event("request /slow");
    let rows = |mesh: &str| {
        let out = pod.subcommand(&["conns", "--mesh", mesh, "--quiet-window", "0"]);
        let table = String::from_utf8_lossy(&out.stdout).to_string();
        let count = |needle: &str| {
            table
                .lines()
                .take_while(|l| !l.is_empty())
                .filter(|l| l.contains(needle))
                .count()
        };
        (
            count(" proxy "),
            count("busy: awaiting the peer's reply"),
            count("busy: request awaiting its answer"),
            table,
        )
    };
    let (proxy, awaiting, requests, table) = rows("ambient");
    // 3 listeners of ztunnel's, the peer's 15008 listener, its accepted end and the tunnel.
    assert_eq!((proxy, awaiting, requests), (6, 1, 1), "{table}");
    // Without the preset all of them are the app's: the tunnel is one more call awaiting its
    // reply, and its far end one more request.
    let (proxy, awaiting, requests, table) = rows("none");
    assert_eq!((proxy, awaiting, requests), (0, 2, 2), "{table}");
    drop((tunnel, slow));
}

/// Envoy's admin, faked (`helpers/fake_envoy_admin.py`), on 127.0.0.1:ADMIN_PORT in the pod.
struct Admin {
    child: Child,
    state: PathBuf,
}

const ADMIN_PORT: u16 = 15000;
const ADMIN_URL: &str = "http://127.0.0.1:15000";

impl Pod {
    fn admin(&self, mode: &str, counts: &str) -> Admin {
        let state = self.events.with_file_name("admin-state");
        std::fs::write(&state, counts).unwrap();
        let mut cmd = Command::new(python());
        cmd.arg(helper("fake_envoy_admin.py"))
            .args([mode, &ADMIN_PORT.to_string(), state.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        self.ns.enter(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let lines = Lines::from(&mut child);
        let first = lines.next(Duration::from_secs(10)).unwrap_or_default();
        assert!(first.starts_with("listening"), "fake admin said: {first}");
        Admin { child, state }
    }
}

impl Admin {
    /// What Envoy has in flight from now on: `CLUSTER HOST REQUESTS` lines, `upgraded N`.
    fn set(&self, counts: &str) {
        let fresh = self.state.with_extension("new");
        std::fs::write(&fresh, counts).unwrap();
        std::fs::rename(&fresh, &self.state).unwrap();
    }

    /// How many times `/clusters` was read.
    fn reads(&self) -> usize {
        let log = std::fs::read_to_string(self.state.with_extension("log")).unwrap_or_default();
        log.lines()
            .filter(|l| l.starts_with("GET /clusters"))
            .count()
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const INBOUND_ONE: &str = "inbound|8080|| 127.0.0.1:8080 1\n";

/// meshwait's hold with the sidecar's counts read from the fake admin.
const HOLD_WITH_ADMIN: [&str; 6] = [
    "--mesh",
    "envoy",
    "--admin-url",
    ADMIN_URL,
    "--drain-timeout",
    "10s",
];

/// `meshwait drain` against the fake admin; (exit code, stdout, stderr, seconds taken).
fn drain_with_admin(pod: &Pod, extra: &[&str]) -> (Option<i32>, String, String, f64) {
    let mut args = vec!["drain", "--mesh", "envoy", "--admin-url", ADMIN_URL];
    args.extend_from_slice(extra);
    let started = now();
    let out = pod.subcommand(&args);
    let took = now() - started;
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        took,
    )
}

#[test]
fn a_request_only_the_sidecar_sees_holds_the_stop_signal_until_it_ends() {
    if !root_or_skip("a_request_only_the_sidecar_sees_holds_the_stop_signal") {
        return;
    }
    // Envoy forwards a gRPC stream to the app over a connection the sockets show as idle.
    let pod = Pod::new("sidecar-in");
    let admin = pod.admin("serve", INBOUND_ONE);
    let flags = [&HOLD_WITH_ADMIN[..], &["--quiet-window", "0"]].concat();
    let mut mw = pod.meshwait(&flags, &[]);
    send(mw.id(), libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        pod.event("TERM").is_none(),
        "SIGTERM passed on while Envoy had a request in flight"
    );
    let ended = now();
    admin.set("");
    let status = wait_bounded(&mut mw, Duration::from_secs(5));
    let stderr = stderr_of(&mut mw);
    assert_eq!(status.code(), Some(0), "{stderr}");
    let late = pod.event("TERM").expect("the app got SIGTERM") - ended;
    assert!(
        late < 0.5,
        "SIGTERM {late:.3}s after the request ended\n{stderr}"
    );
    assert!(
        stderr.contains(
            "sidecar: 1 inbound request active on inbound|8080||; sockets: nothing blocks"
        ) && stderr.contains("held_by=sidecar"),
        "the log says which view holds the drain and why:\n{stderr}"
    );
    assert!(
        stderr.contains("no request in flight in the sidecar; passing SIGTERM on"),
        "{stderr}"
    );
    assert!(admin.reads() >= 5, "read {} times in 1.2 s", admin.reads());

    // The same without the sidecar's view: the sockets see nothing, the stop signal goes at once.
    let pod = Pod::new("sidecar-off");
    let _admin = pod.admin("serve", INBOUND_ONE);
    let mut flags = flags;
    flags[3] = "none"; // --admin-url none
    let mut mw = pod.meshwait(&flags, &[]);
    let signalled = now();
    send(mw.id(), libc::SIGTERM);
    wait_bounded(&mut mw, Duration::from_secs(5));
    assert!(pod.event("TERM").unwrap() - signalled < 0.5);
}

#[test]
fn an_idle_keepalive_connection_with_the_sidecar_read_releases_within_300ms() {
    if !root_or_skip("an_idle_keepalive_connection_with_the_sidecar_read") {
        return;
    }
    let pod = Pod::new("sidecar-idle");
    let admin = pod.admin("serve", "");
    let mut mw = pod.meshwait(&HOLD_WITH_ADMIN, &[]);
    let idle = pod.peer(&["keepalive", &port()], None);
    idle.expect("idle", Duration::from_secs(5));
    // Past the quiet window: the connection is idle, not merely between two requests.
    std::thread::sleep(Duration::from_millis(1100));
    let signalled = now();
    send(mw.id(), libc::SIGTERM);
    wait_bounded(&mut mw, Duration::from_secs(5));
    let held = pod.event("TERM").unwrap() - signalled;
    assert!(held < 0.3, "held {held:.3}s for an idle connection");
    assert!(admin.reads() >= 1, "the sidecar was not read");
    drop(idle);
}

#[test]
fn outbound_requests_hold_the_drain_only_up_to_the_outbound_hold() {
    if !root_or_skip("outbound_requests_hold_the_drain_only_up_to_the_outbound_hold") {
        return;
    }
    // A streaming pull the app keeps open for ever.
    let pod = Pod::new("sidecar-out");
    let _admin = pod.admin("serve", "outbound|443||pubsub.example.com 10.0.0.9:443 1\n");
    let (code, stdout, stderr, took) =
        drain_with_admin(&pod, &["--outbound-hold", "1s", "--timeout", "10s"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        (0.95..2.5).contains(&took),
        "drained after {took:.3}s: {stderr}"
    );
    assert!(
        stderr.contains("1 outbound request active (on outbound|443||pubsub.example.com)"),
        "{stderr}"
    );
    let (code, _, stderr, took) = drain_with_admin(&pod, &["--outbound-hold", "0"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        took < 0.8,
        "{took:.3}s with outbound requests never waited for"
    );
    let (code, stdout, _, took) =
        drain_with_admin(&pod, &["--outbound-hold", "1m", "--timeout", "1500ms"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!((1.4..3.0).contains(&took), "{took:.3}s");
    assert!(
        stdout.starts_with("not drained after") && stdout.contains("1 outbound request active"),
        "{stdout}"
    );
}

#[test]
fn an_unreadable_admin_leaves_the_drain_to_the_sockets_within_one_read_bound() {
    if !root_or_skip("an_unreadable_admin_leaves_the_drain_to_the_sockets") {
        return;
    }
    for mode in ["absent", "hang", "garbage", "huge"] {
        let pod = Pod::new("sidecar-fault");
        let _admin = (mode != "absent").then(|| pod.admin(mode, INBOUND_ONE));
        let (code, stdout, stderr, took) =
            drain_with_admin(&pod, &["--request-timeout", "500ms", "--timeout", "10s"]);
        assert_eq!(code, Some(0), "{mode}: {stdout}{stderr}");
        // Nothing holds the sockets: the drain ends within one read's bound, and says why once.
        assert!(took < 1.3, "{mode}: {took:.3}s\n{stderr}");
        let warned = stderr.matches("cannot read Envoy's request counts").count();
        assert_eq!(warned, 1, "{mode}:\n{stderr}");
        assert!(
            stderr.contains("the drain goes by the sockets alone"),
            "{stderr}"
        );
    }
    // A hung admin never makes the drain unbounded: a request the sockets see holds it until the
    // timeout, as without a sidecar.
    let pod = Pod::new("sidecar-hang");
    let _app = pod.bare_app(&[]);
    let _admin = pod.admin("hang", INBOUND_ONE);
    let slow = pod.peer(&["request", &port(), "/slow/20000"], None);
    pod.wait_event("request /slow");
    let (code, stdout, _, took) =
        drain_with_admin(&pod, &["--request-timeout", "500ms", "--timeout", "1500ms"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!((1.4..2.6).contains(&took), "{took:.3}s");
    assert!(stdout.contains("in :8080"), "{stdout}");
    drop(slow);
}

#[test]
fn envoy_stopping_mid_drain_hands_the_drain_to_the_sockets() {
    if !root_or_skip("envoy_stopping_mid_drain_hands_the_drain_to_the_sockets") {
        return;
    }
    // Envoy has a request in flight at the first read, then exits (pilot-agent stopped it).
    let pod = Pod::new("sidecar-exit");
    let admin = pod.admin("once", INBOUND_ONE);
    let mut mw = pod.meshwait(&HOLD_WITH_ADMIN, &[]);
    let signalled = now();
    send(mw.id(), libc::SIGTERM);
    let status = wait_bounded(&mut mw, Duration::from_secs(8));
    let stderr = stderr_of(&mut mw);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(admin.reads(), 1, "{stderr}");
    let held = pod.event("TERM").unwrap() - signalled;
    assert!(held < 2.0, "held {held:.3}s\n{stderr}");
    assert!(
        stderr.contains("1 inbound request active")
            || stderr.contains("cannot read Envoy's request counts (connection refused)"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("cannot read Envoy's request counts").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn an_upgraded_connection_is_named_when_it_holds_the_drain_to_its_timeout() {
    if !root_or_skip("an_upgraded_connection_is_named") {
        return;
    }
    let pod = Pod::new("sidecar-ws");
    let _admin = pod.admin("serve", &format!("{INBOUND_ONE}upgraded 1\n"));
    let (code, stdout, _, _) = drain_with_admin(&pod, &["--timeout", "500ms"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "1 inbound request active on inbound|8080||, 1 of them upgraded (WebSocket or CONNECT"
        ),
        "{stdout}"
    );
}

#[test]
fn conns_and_doctor_show_the_sidecars_requests_per_cluster() {
    if !root_or_skip("conns_and_doctor_show_the_sidecars_requests") {
        return;
    }
    let pod = Pod::new("sidecar-conns");
    let _admin = pod.admin(
        "serve",
        "inbound|8090|| 127.0.0.1:8090 2\nPassthroughCluster 10.0.0.9:443 1\nupgraded 0\n",
    );
    let args = ["--mesh", "envoy", "--admin-url", ADMIN_URL];
    let out = pod.subcommand(&[&["conns"][..], &args].concat());
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8_lossy(&out.stdout);
    let sidecar = table
        .lines()
        .find(|l| l.starts_with("sidecar: "))
        .unwrap_or_default();
    assert!(
        sidecar.starts_with("sidecar: http://127.0.0.1:15000/clusters, 53 clusters,")
            && sidecar.ends_with("2 inbound, 1 outbound requests in flight"),
        "{table}"
    );
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip_while(|l| !l.starts_with("DIR "))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["in", "2", "inbound|8090||"],
            vec!["out", "1", "PassthroughCluster"]
        ],
        "{table}"
    );

    let out = pod.subcommand(&[&["conns", "--json"][..], &args].concat());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let sidecar = &doc["sidecar"];
    assert_eq!(sidecar["inbound"], 2, "{doc}");
    assert_eq!(sidecar["outbound"], 1);
    assert_eq!(sidecar["upgraded"], 0);
    assert_eq!(sidecar["active"][0]["cluster"], "inbound|8090||");
    assert_eq!(sidecar["active"][0]["direction"], "in");
    assert_eq!(sidecar["active"][0]["requests"], 2);

    let out = pod.subcommand(&[&["doctor", "--json"][..], &args].concat());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let check = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "sidecar view")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        check["evidence"],
        "Envoy's /clusters (53 clusters): 2 inbound on inbound|8090||, 1 outbound on PassthroughCluster",
        "{doc}"
    );
}

//! Draining: real sockets in a network namespace of the test's own (so nothing else on the
//! machine is counted), a real app, real peers. Needs root for the namespace and for a peer
//! running as the proxy's UID.

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
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
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
        let mut cmd = Command::new(python());
        cmd.arg(helper("drainpeer.py"))
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
    // Socket rows only: not the header, the blank line or the summary.
    let sockets = &rows[1..rows.len() - 2];
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
        rows.last()
            .unwrap()
            .starts_with("2 app connections busy, 2 idle; 1 app listeners; 3 proxy sockets"),
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

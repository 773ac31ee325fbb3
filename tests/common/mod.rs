//! Shared test tools: the built binary, a scripted readiness server, bounded waits.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

pub const MESHWAIT: &str = env!("CARGO_BIN_EXE_meshwait");

/// The binary the init and job-control tests run: `TEST_MESHWAIT` when set (e.g. the static
/// release build, `target/x86_64-unknown-linux-musl/release/meshwait`), else the one cargo built.
pub fn meshwait_binary() -> &'static str {
    static BINARY: OnceLock<String> = OnceLock::new();
    BINARY.get_or_init(|| std::env::var("TEST_MESHWAIT").unwrap_or_else(|_| MESHWAIT.to_string()))
}

/// A command running meshwait with a clean MESHWAIT_* environment and default dispositions for
/// the stop signals and 32-34: meshwait honours signals it inherited as ignored and hands the
/// "ignore" on to the app, and a test runner started by `nohup` or as a background job, or by a
/// supervisor that ignores the real-time signals it does not use, would otherwise pass those on.
pub fn meshwait() -> Command {
    clean(meshwait_binary())
}

/// `program` with meshwait's clean start (see `meshwait`), for a program that starts meshwait
/// (`unshare`).
pub fn clean(program: &str) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(program);
    without_meshwait_env(&mut cmd);
    // SAFETY: the closure runs between fork and exec and calls only signal(2), which is
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            for signal in [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM] {
                libc::signal(signal, libc::SIG_DFL);
            }
            // libc's signal() refuses 32-34: the raw call, with the kernel's struct sigaction
            // (handler, flags, restorer, mask).
            let default: [usize; 4] = [libc::SIG_DFL, 0, 0, 0];
            for signal in 32..=34 {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    default.as_ptr(),
                    std::ptr::null_mut::<usize>(),
                    8,
                );
            }
            Ok(())
        });
    }
    cmd
}

/// Keeps the test runner's MESHWAIT_* variables away from `cmd` (and whatever it starts).
pub fn without_meshwait_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MESHWAIT_") {
            cmd.env_remove(key);
        }
    }
}

/// The real python interpreter (not a version-manager shim, which would add a process).
pub fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 is needed by the tests");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
}

pub fn helper(name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "helpers", name]
        .iter()
        .collect();
    path.to_string_lossy().into_owned()
}

pub fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("meshwait-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits for a child with a bound; kills it and fails the test if the bound passes.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> ExitStatus {
    match wait_or_kill(child, limit) {
        Some(status) => status,
        None => panic!("process did not exit within {limit:?}"),
    }
}

/// Waits for a child with a bound; `None` (and the child killed) when the bound passes, so the
/// caller can say in which setting it hung.
pub fn wait_or_kill(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Polls `check` until true or the bound passes.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if check() {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    check()
}

pub fn send(pid: u32, signal: i32) {
    assert_eq!(
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        unsafe { libc::kill(pid as i32, signal) },
        0,
        "kill({pid}, {signal})"
    );
}

pub fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text);
    }
    text
}

/// Reads lines from a child's stdout on a thread, so tests can wait for one with a bound.
pub struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
}

impl Lines {
    pub fn from(child: &mut Child) -> Lines {
        let out = child.stdout.take().expect("stdout piped");
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { rx }
    }

    pub fn next(&self, limit: Duration) -> Option<String> {
        self.rx.recv_timeout(limit).ok()
    }

    /// Lines that arrive within `limit`, without waiting for more.
    pub fn drain(&self, limit: Duration) -> Vec<String> {
        let mut got = Vec::new();
        while let Some(line) = self.next(limit) {
            got.push(line);
        }
        got
    }
}

/// What the readiness server does with one connection.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Status(u16, &'static str),
    /// Accept and never answer (until the test ends).
    Hang,
    /// Accept and reset the connection (RST) without answering.
    Reset,
    /// Answer with bytes that are not HTTP.
    Garbage,
    /// Answer with this status after this many milliseconds.
    Delayed(u64, u16),
    /// Answer with this status as soon as the connection is accepted, before reading the
    /// request (as an `nc -l` responder does), then read it and close.
    Early(u16),
    /// Answer with this status at once and never read the request, keeping the connection open
    /// (until the test ends).
    EarlyDeaf(u16),
    /// Answer with this status at once and reset the connection (an abortive close, SO_LINGER
    /// 0), without reading the request.
    EarlyReset(u16),
}

struct State {
    script: Vec<Reply>,
    then: Reply,
    served: Vec<Reply>,
    arrivals: Vec<Instant>,
    /// Request lines (`POST /quitquitquit HTTP/1.1`), in arrival order.
    requests: Vec<String>,
}

/// A tiny readiness server: replies from a script, then a default the test can change.
pub struct ReadyServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl ReadyServer {
    pub fn start(bind: &str, script: Vec<Reply>, then: Reply) -> ReadyServer {
        let listener = TcpListener::bind(bind).expect("bind readiness server");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            script,
            then,
            served: Vec::new(),
            arrivals: Vec::new(),
            requests: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let reply = {
                    let mut s = st.lock().unwrap();
                    s.arrivals.push(Instant::now());
                    let reply = if s.script.is_empty() {
                        s.then.clone()
                    } else {
                        s.script.remove(0)
                    };
                    s.served.push(reply.clone());
                    reply
                };
                let (sp, st) = (sp.clone(), st.clone());
                thread::spawn(move || serve(conn, reply, sp, st));
            }
        });
        ReadyServer { addr, state, stop }
    }

    /// `http://localhost:PORT/healthz/ready`
    pub fn url(&self) -> String {
        format!("http://localhost:{}/healthz/ready", self.addr.port())
    }

    pub fn set(&self, reply: Reply) {
        self.state.lock().unwrap().then = reply;
    }

    pub fn served(&self) -> Vec<Reply> {
        self.state.lock().unwrap().served.clone()
    }

    /// The request lines received so far.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// When each connection was accepted.
    pub fn arrivals(&self) -> Vec<Instant> {
        self.state.lock().unwrap().arrivals.clone()
    }
}

impl Drop for ReadyServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn read_request(conn: &mut TcpStream) -> String {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    text.lines().next().unwrap_or("").to_string()
}

fn serve(mut conn: TcpStream, reply: Reply, stop: Arc<AtomicBool>, state: Arc<Mutex<State>>) {
    let read_request = |conn: &mut TcpStream| {
        let line = read_request(conn);
        state.lock().unwrap().requests.push(line);
    };
    match reply {
        Reply::Status(code, body) => {
            read_request(&mut conn);
            let _ = write!(
                conn,
                "HTTP/1.1 {code} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
        Reply::Hang => {
            read_request(&mut conn);
            while !stop.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(20));
            }
        }
        Reply::Reset => {
            read_request(&mut conn);
            abort(&conn);
        }
        Reply::EarlyReset(code) => {
            // Spread over half a millisecond, so that resets land before the connection is
            // first looked at, between that and the request's write, and after it.
            let nth = state.lock().unwrap().arrivals.len() as u64;
            thread::sleep(Duration::from_micros(50 * (nth % 10)));
            early_answer(&mut conn, code);
            abort(&conn);
        }
        Reply::Delayed(ms, code) => {
            read_request(&mut conn);
            thread::sleep(Duration::from_millis(ms));
            let _ = write!(
                conn,
                "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        Reply::Early(code) => {
            early_answer(&mut conn, code);
            read_request(&mut conn);
        }
        Reply::EarlyDeaf(code) => {
            early_answer(&mut conn, code);
            while !stop.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(20));
            }
        }
        Reply::Garbage => {
            read_request(&mut conn);
            let _ = conn.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\x00\x01\x02garbage\r\n\r\n");
        }
    }
}

/// One status line and empty headers in a single write, as a responder that answers before
/// reading does: nothing of it is left unsent when the connection is then reset.
fn early_answer(conn: &mut TcpStream, code: u16) {
    let answer = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let _ = conn.write_all(answer.as_bytes());
}

/// Makes closing `conn` reset it (RST) instead of closing it in order (FIN).
fn abort(conn: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    use std::os::fd::AsRawFd;
    // SAFETY: `linger` outlives the call and the length given is its size.
    unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Spawns meshwait with piped stdout and stderr.
pub fn spawn(mut cmd: Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("spawn meshwait")
}

pub fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// Whether this machine lets `test` make the namespaces it needs (`unshare` with `flags`), as
/// root. Root alone is not enough inside some containers, so it tries. CI must run such tests:
/// a silent skip there would turn a whole suite green, so with `CI` set a skip fails instead.
pub fn root_or_skip(test: &str, flags: &[&str]) -> bool {
    let can = is_root()
        && Command::new("unshare")
            .args(flags)
            .arg("true")
            .status()
            .is_ok_and(|s| s.success());
    if !can {
        let needs = format!("root and `unshare {}`", flags.join(" "));
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: needs {needs}, and CI is set"
        );
        println!("skipped {test}: needs {needs}");
    }
    can
}

/// A network namespace of its own with loopback up, so a test sees only its own sockets.
/// Needs root; held open by a process that exits when the namespace is dropped.
pub struct Netns {
    holder: Child,
    ns: std::fs::File,
}

impl Netns {
    pub fn new() -> Netns {
        let code = "import fcntl, socket, struct, sys\n\
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
flags = struct.unpack('16sH', fcntl.ioctl(s, 0x8913, struct.pack('16sH', b'lo', 0)))[1]\n\
fcntl.ioctl(s, 0x8914, struct.pack('16sH', b'lo', flags | 1))\n\
print('up', flush=True)\n\
sys.stdin.read()\n";
        let mut holder = Command::new("unshare")
            .args(["--net", "--", python(), "-c", code])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("unshare");
        let mut line = String::new();
        BufReader::new(holder.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "up",
            "could not bring loopback up in a new namespace"
        );
        let ns = std::fs::File::open(format!("/proc/{}/ns/net", holder.id())).unwrap();
        Netns { holder, ns }
    }

    /// Makes `cmd` start inside this namespace.
    pub fn enter(&self, cmd: &mut Command) {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let fd = self.ns.as_raw_fd();
        // SAFETY: setns is a plain system call, async-signal-safe between fork and exec, and the
        // descriptor stays open while `self` lives.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// The stand-in sidecar (`helpers/fake_sidecar.py`): pilot-agent's status port and Envoy's admin
/// in a chosen state; killed when dropped.
pub struct Sidecar {
    child: Child,
    pub status: u16,
    pub admin: u16,
}

impl Sidecar {
    pub fn start(mode: &str, ports: &[u16], netns: Option<&Netns>) -> Sidecar {
        let mut cmd = Command::new(python());
        cmd.arg(helper("fake_sidecar.py"))
            .arg(mode)
            .args(ports.iter().map(u16::to_string))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(ns) = netns {
            ns.enter(&mut cmd);
        }
        let mut child = cmd.spawn().expect("fake sidecar");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.first(), Some(&"ports"), "{line}");
        Sidecar {
            status: words[1].parse().unwrap(),
            admin: words[2].parse().unwrap(),
            child,
        }
    }

    /// On ports of its own (no listeners beyond the two endpoints).
    pub fn anywhere(mode: &str) -> Sidecar {
        Sidecar::start(mode, &[0, 0], None)
    }

    pub fn endpoint_args(&self) -> Vec<String> {
        vec![
            "--ready-url".into(),
            format!("http://127.0.0.1:{}/healthz/ready", self.status),
            "--admin-url".into(),
            format!("http://127.0.0.1:{}", self.admin),
        ]
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `meshwait ARGS` in a mount namespace of its own where these files replace /etc/hosts or
/// /etc/resolv.conf (bind mounts that end with the process: nothing on the machine changes).
/// Needs root; see `root_or_skip(test, &["--mount"])`.
pub fn meshwait_with_etc(hosts: Option<&Path>, resolv_conf: Option<&Path>) -> Command {
    let mut script = String::new();
    for (file, target) in [(hosts, "/etc/hosts"), (resolv_conf, "/etc/resolv.conf")] {
        if let Some(file) = file {
            script.push_str(&format!("mount --bind '{}' {target} && ", file.display()));
        }
    }
    script.push_str("exec \"$@\"");
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "sh", "-c", &script, "sh", MESHWAIT]);
    without_meshwait_env(&mut cmd);
    cmd
}

/// A hosts file in `dir` giving each of `names` the address 127.0.0.1.
pub fn hosts_file(dir: &Path, names: &[&str]) -> PathBuf {
    let path = dir.join("hosts");
    let lines: String = names.iter().map(|n| format!("127.0.0.1 {n}\n")).collect();
    std::fs::write(&path, lines).unwrap();
    path
}

/// A resolver that never answers: a UDP socket on `ip`:53 that swallows every query, and a
/// resolv.conf naming it (for `meshwait_with_etc`). `None`, with a message, when the port cannot
/// be bound. The socket lives as long as the value.
pub struct DeadResolver {
    _sink: std::net::UdpSocket,
    pub conf: PathBuf,
}

impl DeadResolver {
    pub fn at(ip: &str, tag: &str) -> Option<DeadResolver> {
        let Ok(sink) = std::net::UdpSocket::bind((ip, 53)) else {
            eprintln!("skipped: cannot bind {ip}:53");
            return None;
        };
        let conf = scratch_dir(tag).join("resolv.conf");
        std::fs::write(
            &conf,
            format!("nameserver {ip}\noptions timeout:5 attempts:2\n"),
        )
        .unwrap();
        Some(DeadResolver { _sink: sink, conf })
    }
}

/// The fields of /proc/PID/stat after the command name, the state first (the name may itself
/// hold spaces and parentheses); `None` once the process is gone.
pub fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    )
}

/// The CPU time `pid` has used so far, user and system, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let fields = proc_stat(pid).unwrap();
    // utime and stime, the 14th and 15th fields of the line (12th and 13th after the name).
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Clock ticks in a second, the unit of `cpu_ticks`.
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only queries.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as u64 }
}

/// Sockets listening on `ports` of every address inside `ns` that accept and never answer, as
/// ztunnel's in-pod listeners look from the app's container; closed when dropped.
pub struct Listeners {
    child: Child,
}

impl Listeners {
    pub fn start(ports: &[u16], ns: &Netns) -> Listeners {
        let code = r#"
import socket, sys
held = []
for port in sys.argv[1:]:
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", int(port)))
    s.listen(16)
    held.append(s)
print("listening", flush=True)
sys.stdin.read()
"#;
        let mut cmd = Command::new(python());
        cmd.args(["-c", code])
            .args(ports.iter().map(u16::to_string))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        ns.enter(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "listening", "the listeners did not start");
        Listeners { child }
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

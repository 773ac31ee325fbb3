//! `meshwait conns`: the table the drain sees, so a user can tell what holds a pod up.
//! Rows are written as the sockets stream by; nothing is collected.

use std::fmt::{self, Write as _};
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};

use tokio::runtime::Runtime;

use crate::commands::logging::json_string;
use crate::exit_code;
use crate::proxy::envoy_clusters::Flow;
use crate::proxy::sidecar_http::NoAnswer;
use crate::proxy::sidecar_view::{self, Sight};
use crate::run::drain::SocketPlan;
use crate::sockets::connection_class::{Busy, Class, scan_classified};
use crate::sockets::{Socket, SocketView};
use crate::untrusted_text;

#[derive(Debug, Default)]
struct Totals {
    listeners: u32,
    proxy: u32,
    busy: u32,
    idle: u32,
    orphans: u32,
}

/// The `component` of this module's log lines. Users filter logs by it, so it is fixed here,
/// not taken from the module path, which moves when the code is reorganised.
const LOG: &str = "lifecycle";

/// `meshwait conns`: 0 with the table on stdout, or 71 when the sockets cannot be read.
pub fn command(sockets: &SocketPlan, json: bool, runtime: &Runtime) -> i32 {
    // The sidecar first: its read is bounded, and the table then streams out unbroken.
    let sidecar = sockets
        .sidecar
        .as_ref()
        .map(|plan| runtime.block_on(sidecar_view::look(plan, true)));
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(32 * 1024, stdout.lock());
    match list(sockets, sidecar.as_ref(), json, &mut out) {
        Ok(()) => exit_code::OK,
        Err(e) => {
            tracing::error!(target: LOG, error = %e, "cannot read the sockets");
            exit_code::OS_ERROR
        }
    }
}

/// Writes every listener and connection with its class, then what the sidecar counts (`sidecar`:
/// one look at Envoy's `/clusters`, when its admin is known); `Err` only when the sockets cannot
/// be read. A closed output (`| head`) ends the listing quietly.
pub fn list(
    plan: &SocketPlan,
    sidecar: Option<&Result<Sight, NoAnswer>>,
    json: bool,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut view = SocketView::new(plan.source);
    let mut printer = Printer {
        json,
        out,
        rows: 0,
        closed: false,
        totals: Totals::default(),
        line: Line::default(),
    };
    printer.start();
    let scanned = scan_classified(&mut view, &plan.rules, plan.quiet, &mut |s, class, _| {
        printer.row(s, class);
    });
    match scanned {
        Ok(()) => {
            let url = plan.sidecar.as_ref().map(|s| s.admin.to_string());
            printer.finish(view.source_name(), url.as_deref().zip(sidecar));
            Ok(())
        }
        Err(e) => {
            printer.fail(&e);
            Err(e)
        }
    }
}

struct Printer<'a> {
    json: bool,
    out: &'a mut dyn Write,
    rows: u64,
    closed: bool,
    totals: Totals,
    line: Line,
}

impl Printer<'_> {
    fn emit(&mut self) {
        if !self.closed && self.out.write_all(&self.line.0).is_err() {
            self.closed = true;
        }
        self.line.clear();
    }

    fn start(&mut self) {
        if self.json {
            self.line.push_str("{\"sockets\":[");
        } else {
            let _ = writeln!(
                self.line,
                "{:<10} {:<22} {:<22} {:>6} {:<6} {:<6} STATUS",
                "STATE", "LOCAL", "REMOTE", "UID", "OWNER", "DIR"
            );
        }
        self.emit();
    }

    fn row(&mut self, s: &Socket, class: Class) {
        let (owner, direction, status, why, age_ms) = match class {
            Class::Proxy => {
                self.totals.proxy += 1;
                ("proxy", "-", "-", None, 0)
            }
            Class::Listener => {
                self.totals.listeners += 1;
                ("app", "listen", "-", None, 0)
            }
            Class::Remnant => ("app", "-", "-", None, 0),
            Class::Orphan => {
                self.totals.orphans += 1;
                ("kernel", "-", "closing", None, 0)
            }
            Class::App {
                direction,
                busy,
                age_ms,
            } => {
                if busy.is_some() {
                    self.totals.busy += 1;
                } else {
                    self.totals.idle += 1;
                }
                let status = if busy.is_some() { "busy" } else { "idle" };
                (
                    "app",
                    direction.name(),
                    status,
                    busy.map(Busy::name),
                    age_ms,
                )
            }
        };
        // Pushed piece by piece, byte by byte: with thousands of rows, the formatting machinery
        // and musl's memcpy (slow for the few bytes each piece has) cost several times the scan.
        let line = &mut self.line;
        if self.json {
            if self.rows > 0 {
                line.push(',');
            }
            put(line, "\n{\"state\":\"");
            put(line, s.state.name());
            put(line, "\",\"local\":\"");
            push_addr(line, s.local);
            put(line, "\",\"remote\":\"");
            push_addr(line, s.remote);
            put(line, "\",\"uid\":");
            push_number(line, s.uid.into());
            put(line, ",\"inode\":");
            push_number(line, s.inode);
            for (key, value) in [
                ("owner", owner),
                ("direction", direction),
                ("status", status),
            ] {
                put(line, ",\"");
                put(line, key);
                put(line, "\":\"");
                put(line, value);
                line.push('"');
            }
            put(line, ",\"why\":");
            match why {
                Some(why) => {
                    let _ = json_string(line, why);
                }
                None => put(line, "null"),
            }
            let numbers = [
                ("age_ms", u64::from(age_ms)),
                ("recv_queue", s.recv_queue.into()),
                ("send_queue", s.send_queue.into()),
            ];
            let traffic = s.activity.map(|a| {
                [
                    ("last_recv_ms", a.last_recv_ms.into()),
                    ("last_sent_ms", a.last_sent_ms.into()),
                    ("bytes_received", a.bytes_received),
                    ("bytes_sent", a.bytes_sent),
                ]
            });
            for (key, value) in numbers.into_iter().chain(traffic.into_iter().flatten()) {
                put(line, ",\"");
                put(line, key);
                put(line, "\":");
                push_number(line, value);
            }
            line.push('}');
        } else {
            pad_after(line, s.state.name(), 11);
            let at = line.len();
            push_addr(line, s.local);
            pad_from(line, at, 23);
            let at = line.len();
            push_addr(line, s.remote);
            pad_from(line, at, 23);
            // Right-aligned in 6 columns: the spaces it lacks, then the number.
            let mut digits = [0; 20];
            let uid = decimal(s.uid.into(), &mut digits);
            put(line, &SPACES[..6usize.saturating_sub(uid.len())]);
            put(line, uid);
            line.push(' ');
            pad_after(line, owner, 7);
            pad_after(line, direction, 7);
            put(line, status);
            if let Some(why) = why {
                put(line, ": ");
                put(line, why);
                if age_ms > 0 {
                    put(line, " (");
                    push_number(line, age_ms.into());
                    put(line, " ms)");
                }
            }
            line.push('\n');
        }
        self.rows += 1;
        self.emit();
    }

    /// Ends the output after a failed scan so that JSON stays a valid document.
    fn fail(&mut self, e: &io::Error) {
        if self.json {
            self.line.push_str("\n],\"error\":");
            let _ = json_string(&mut self.line, &e.to_string());
            self.line.push_str("}\n");
        }
        self.emit();
        if !self.closed {
            let _ = self.out.flush();
        }
    }

    fn finish(&mut self, source: &str, sidecar: Option<(&str, &Result<Sight, NoAnswer>)>) {
        let t = &self.totals;
        if self.json {
            let _ = write!(
                self.line,
                "\n],\"summary\":{{\"source\":\"{source}\",\"busy\":{},\"idle\":{},\"app_listeners\":{},\"proxy_sockets\":{},\"closing\":{}}},\"sidecar\":",
                t.busy, t.idle, t.listeners, t.proxy, t.orphans
            );
            sidecar_json(&mut self.line, sidecar);
            self.line.push_str("}\n");
        } else {
            let _ = writeln!(
                self.line,
                "\n{} app connections busy, {} idle; {} app listeners; {} proxy sockets; {} closing (source: {source})",
                t.busy, t.idle, t.listeners, t.proxy, t.orphans
            );
            sidecar_text(&mut self.line, sidecar);
        }
        self.emit();
        if !self.closed {
            let _ = self.out.flush();
        }
    }
}

fn flow_name(flow: Flow) -> &'static str {
    match flow {
        Flow::Inbound => "in",
        Flow::Outbound => "out",
        Flow::Proxy => "proxy",
    }
}

/// The sidecar's requests in flight, per cluster, under the socket table.
fn sidecar_text(line: &mut Line, sidecar: Option<(&str, &Result<Sight, NoAnswer>)>) {
    let Some((url, result)) = sidecar else {
        line.push_str("\nsidecar: not read (no Envoy admin for this mesh, or --admin-url none)\n");
        return;
    };
    let sight = match result {
        Ok(sight) => sight,
        Err(why) => {
            let why = untrusted_text::piece(&why.to_string());
            let _ = writeln!(line, "\nsidecar: {url}/clusters unreadable: {why}");
            return;
        }
    };
    let r = &sight.reading;
    let _ = writeln!(
        line,
        "\nsidecar: {url}/clusters, {} clusters, {} bytes, read in {} ms: {} inbound, {} outbound requests in flight",
        r.clusters,
        r.bytes,
        sight.took.as_millis(),
        r.total(Flow::Inbound),
        r.total(Flow::Outbound)
    );
    if r.active.is_empty() && r.unnamed == (0, 0) {
        return;
    }
    let _ = writeln!(line, "{:<6} {:>8}  CLUSTER", "DIR", "REQUESTS");
    for a in &r.active {
        // Names come from the proxy's configuration: shown escaped, like all text from outside.
        let _ = writeln!(
            line,
            "{:<6} {:>8}  {}",
            flow_name(a.flow),
            a.requests,
            untrusted_text::piece(&a.cluster)
        );
    }
    for (flow, n) in [(Flow::Inbound, r.unnamed.0), (Flow::Outbound, r.unnamed.1)] {
        if n > 0 {
            let _ = writeln!(line, "{:<6} {:>8}  (other clusters)", flow_name(flow), n);
        }
    }
    if let Some(n) = sight.upgraded.filter(|&n| n > 0) {
        let _ = writeln!(
            line,
            "{n} of the inbound requests are upgraded connections (WebSocket or CONNECT)"
        );
    }
}

/// The same as a JSON value: `null`, `{"url", "error"}` or the counts.
fn sidecar_json(line: &mut Line, sidecar: Option<(&str, &Result<Sight, NoAnswer>)>) {
    let Some((url, result)) = sidecar else {
        line.push_str("null");
        return;
    };
    line.push_str("{\"url\":");
    let _ = json_string(line, url);
    match result {
        Err(why) => {
            line.push_str(",\"error\":");
            let _ = json_string(line, &why.to_string());
        }
        Ok(sight) => {
            let r = &sight.reading;
            let _ = write!(
                line,
                ",\"clusters\":{},\"bytes\":{},\"read_ms\":{},\"inbound\":{},\"outbound\":{},\"upgraded\":",
                r.clusters,
                r.bytes,
                sight.took.as_millis(),
                r.total(Flow::Inbound),
                r.total(Flow::Outbound)
            );
            match sight.upgraded {
                Some(n) => push_number(line, n.into()),
                None => line.push_str("null"),
            }
            line.push_str(",\"active\":[");
            for (i, a) in r.active.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                line.push_str("{\"cluster\":");
                let _ = json_string(line, &a.cluster);
                let _ = write!(
                    line,
                    ",\"direction\":\"{}\",\"requests\":{}}}",
                    flow_name(a.flow),
                    a.requests
                );
            }
            let _ = write!(
                line,
                "],\"other_clusters\":{{\"in\":{},\"out\":{}}}",
                r.unnamed.0, r.unnamed.1
            );
        }
    }
    line.push('}');
}

/// IPv4-mapped IPv6 addresses (dual-stack listeners) shown as the IPv4 address they carry.
fn push_addr(line: &mut Line, addr: SocketAddr) {
    let v4 = match addr.ip() {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    };
    match v4 {
        Some(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    line.push('.');
                }
                push_number(line, octet.into());
            }
        }
        // Rare enough in a pod that the general formatter is fine.
        None => {
            let _ = write!(line, "[{}]", addr.ip());
        }
    }
    line.push(':');
    push_number(line, addr.port().into());
}

/// The output line being built. Its bytes, not a `String`, so that `put` can append byte by byte;
/// only whole strings and chars go in, so it always holds UTF-8.
#[derive(Default)]
struct Line(Vec<u8>);

impl Line {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }

    fn push(&mut self, c: char) {
        if c.is_ascii() {
            self.0.push(c as u8);
        } else {
            self.push_str(c.encode_utf8(&mut [0; 4]));
        }
    }

    fn push_str(&mut self, text: &str) {
        self.0.extend_from_slice(text.as_bytes());
    }
}

impl fmt::Write for Line {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.push_str(text);
        Ok(())
    }

    fn write_char(&mut self, c: char) -> fmt::Result {
        self.push(c);
        Ok(())
    }
}

/// Appends `text` without a memcpy call per piece (see `row`).
fn put(line: &mut Line, text: &str) {
    line.0.reserve(text.len());
    for &b in text.as_bytes() {
        line.0.push(b);
    }
}

fn push_number(line: &mut Line, n: u64) {
    put(line, decimal(n, &mut [0; 20]));
}

/// `n` in decimal, written at the end of `digits`.
fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &str {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&digits[at..]).unwrap_or_default()
}

/// `text`, then spaces up to `width` (at least one).
fn pad_after(line: &mut Line, text: &str, width: usize) {
    let at = line.len();
    put(line, text);
    pad_from(line, at, width);
}

/// Spaces until the column that started at `at` is `width` wide, and at least one.
fn pad_from(line: &mut Line, at: usize, width: usize) {
    pad_to(line, (at + width).max(line.len() + 1));
}

const SPACES: &str = "                                                  ";

fn pad_to(line: &mut Line, len: usize) {
    while line.len() < len {
        let n = (len - line.len()).min(SPACES.len());
        put(line, &SPACES[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sockets::TcpState;

    /// Guards the table against what the proxy names its clusters: a name with a line break and
    /// an escape sequence printed a forged row.
    #[test]
    fn cluster_names_are_shown_escaped() {
        use crate::proxy::envoy_clusters::{Active, Reading};
        let sight = Sight {
            reading: Reading {
                active: vec![Active {
                    cluster: "inbound|8080||\u{1b}[2J\nin        9  forged\u{2028}".into(),
                    flow: Flow::Inbound,
                    requests: 1,
                }],
                unnamed: (0, 0),
                clusters: 1,
                bytes: 10,
            },
            upgraded: None,
            took: std::time::Duration::from_millis(1),
        };
        let mut line = Line::default();
        sidecar_text(&mut line, Some(("http://localhost:15000", &Ok(sight))));
        let line = String::from_utf8(line.0).unwrap();
        assert!(!line.contains(['\u{1b}', '\u{2028}']), "{line}");
        assert_eq!(
            line.lines().filter(|l| l.contains("forged")).count(),
            1,
            "{line}"
        );
        assert!(
            line.contains("inbound|8080||\\u{1b}[2J\\nin        9  forged\\u{2028}"),
            "{line}"
        );
    }

    /// Output that reaches the terminal only on `flush` (as a `BufWriter` before exit would).
    #[derive(Default)]
    struct Sink {
        pending: Vec<u8>,
        flushed: Vec<u8>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.pending.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.flushed.append(&mut self.pending);
            Ok(())
        }
    }

    fn socket(state: TcpState, local: &str, remote: &str, uid: u32) -> Socket {
        Socket {
            state,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            uid,
            inode: 7,
            recv_queue: 0,
            send_queue: 0,
            activity: None,
        }
    }

    fn printer(json: bool, out: &mut Sink) -> Printer<'_> {
        Printer {
            json,
            out,
            rows: 0,
            closed: false,
            totals: Totals::default(),
            line: Line::default(),
        }
    }

    /// Guards the table's layout: columns padded to their width and at least one space apart
    /// when a value overflows, the UID right-aligned, the why and age of a busy connection, and
    /// a total per kind of row; all of it flushed.
    #[test]
    fn text_rows_keep_their_columns_and_the_totals_count_each_kind() {
        use crate::sockets::connection_class::{Busy, Direction};
        let mut out = Sink::default();
        let mut p = printer(false, &mut out);
        p.start();
        p.row(
            &socket(TcpState::Listen, "0.0.0.0:8080", "0.0.0.0:0", 1000),
            Class::Listener,
        );
        p.row(
            &socket(
                TcpState::Established,
                "127.0.0.1:8080",
                "127.0.0.6:40000",
                1000,
            ),
            Class::App {
                direction: Direction::Inbound,
                busy: Some(Busy::Request),
                age_ms: 1500,
            },
        );
        p.row(
            &socket(
                TcpState::Established,
                "[2001:db8::1234:5678]:40001",
                "[2001:db8::9]:15001",
                4_294_967_295,
            ),
            Class::App {
                direction: Direction::Outbound,
                busy: None,
                age_ms: 0,
            },
        );
        p.row(
            &socket(
                TcpState::Established,
                "127.0.0.1:8080",
                "127.0.0.6:40004",
                1000,
            ),
            Class::App {
                direction: Direction::Inbound,
                busy: Some(Busy::Queued),
                age_ms: 0,
            },
        );
        p.row(
            &socket(
                TcpState::Established,
                "127.0.0.1:15001",
                "127.0.0.1:40002",
                1337,
            ),
            Class::Proxy,
        );
        p.row(
            &socket(TcpState::FinWait1, "127.0.0.1:8080", "127.0.0.6:40003", 0),
            Class::Orphan,
        );
        p.finish("netlink", None);
        let text = String::from_utf8(out.flushed).unwrap();
        assert!(out.pending.is_empty(), "left unflushed");
        let expected = [
            "STATE      LOCAL                  REMOTE                    UID OWNER  DIR    STATUS",
            "LISTEN     0.0.0.0:8080           0.0.0.0:0                1000 app    listen -",
            "ESTAB      127.0.0.1:8080         127.0.0.6:40000          1000 app    in     busy: request awaiting its answer (1500 ms)",
            "ESTAB      [2001:db8::1234:5678]:40001 [2001:db8::9]:15001    4294967295 app    out    idle",
            "ESTAB      127.0.0.1:8080         127.0.0.6:40004          1000 app    in     busy: bytes queued",
            "ESTAB      127.0.0.1:15001        127.0.0.1:40002          1337 proxy  -      -",
            "FIN-WAIT-1 127.0.0.1:8080         127.0.0.6:40003             0 kernel -      closing",
            "",
            "2 app connections busy, 1 idle; 1 app listeners; 1 proxy sockets; 1 closing (source: netlink)",
            "",
            "sidecar: not read (no Envoy admin for this mesh, or --admin-url none)",
        ];
        assert_eq!(text.lines().collect::<Vec<_>>(), expected, "{text}");
    }

    /// Guards the end of a failed listing: JSON stays one valid document naming the error, and
    /// what was written is flushed.
    #[test]
    fn a_failed_scan_still_ends_the_json_document() {
        let mut out = Sink::default();
        let mut p = printer(true, &mut out);
        p.start();
        p.row(
            &socket(TcpState::Listen, "0.0.0.0:8080", "0.0.0.0:0", 1000),
            Class::Listener,
        );
        p.fail(&io::Error::other("sock_diag said no"));
        let text = String::from_utf8(out.flushed).unwrap();
        assert!(out.pending.is_empty(), "left unflushed");
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["error"], "sock_diag said no", "{text}");
        assert_eq!(doc["sockets"][0]["state"], "LISTEN", "{text}");
    }

    #[test]
    fn addresses_and_numbers() {
        let mut line = Line::default();
        push_addr(&mut line, "127.0.0.1:8080".parse().unwrap());
        line.push(' ');
        push_addr(&mut line, "[::ffff:10.0.0.5]:443".parse().unwrap());
        line.push(' ');
        push_addr(&mut line, "[2001:db8::1]:15006".parse().unwrap());
        line.push(' ');
        push_number(&mut line, 0);
        line.push(' ');
        push_number(&mut line, u64::MAX);
        assert_eq!(
            String::from_utf8(line.0).unwrap(),
            "127.0.0.1:8080 10.0.0.5:443 [2001:db8::1]:15006 0 18446744073709551615"
        );
    }
}

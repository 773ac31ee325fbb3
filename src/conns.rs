//! `meshwait conns`: the table the drain sees, so a user can tell what holds a pod up.
//! Rows are written as the sockets stream by; nothing is collected.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};

use crate::connection_class::{Class, Classifier};
use crate::drain::SocketPlan;
use crate::logging::json_string;
use crate::port_set::PortSet;
use crate::sockets::{Socket, SocketView, TcpState, Which};

#[derive(Debug, Default)]
struct Totals {
    listeners: u32,
    proxy: u32,
    busy: u32,
    idle: u32,
    orphans: u32,
}

/// Writes every listener and connection with its class; `Err` only when the sockets cannot be
/// read. A closed output (`| head`) ends the listing quietly.
pub fn list(plan: &SocketPlan, json: bool, out: &mut dyn Write) -> io::Result<()> {
    let mut view = SocketView::new(plan.source);
    let mut printer = Printer {
        json,
        out,
        rows: 0,
        closed: false,
        totals: Totals::default(),
        line: String::new(),
    };
    printer.start();
    // One pass: listeners arrive first and teach the classifier the app's ports.
    let mut classifier = Classifier::new(&plan.rules, PortSet::new(), plan.quiet);
    let scanned = view.scan(Which::ListenersThenConnections, &mut |s: &Socket| {
        if s.state == TcpState::Listen && !plan.rules.owns(s) {
            classifier.learn_app_port(s.local.port());
        }
        printer.row(s, classifier.classify(s));
    });
    match scanned {
        Ok(()) => {
            printer.finish(view.source_name());
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
    line: String,
}

impl Printer<'_> {
    fn emit(&mut self) {
        if !self.closed && self.out.write_all(self.line.as_bytes()).is_err() {
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
                    busy.map(|b| b.name()),
                    age_ms,
                )
            }
        };
        if self.json {
            if self.rows > 0 {
                self.line.push(',');
            }
            self.line.push_str("\n{\"state\":");
            let _ = json_string(&mut self.line, s.state.name());
            let _ = write!(
                self.line,
                ",\"local\":\"{}\",\"remote\":\"{}\"",
                show(s.local),
                show(s.remote)
            );
            let _ = write!(
                self.line,
                ",\"uid\":{},\"inode\":{},\"owner\":\"{owner}\",\"direction\":\"{direction}\",\"status\":\"{status}\"",
                s.uid, s.inode
            );
            self.line.push_str(",\"why\":");
            match why {
                Some(why) => {
                    let _ = json_string(&mut self.line, why);
                }
                None => self.line.push_str("null"),
            }
            let _ = write!(
                self.line,
                ",\"age_ms\":{age_ms},\"recv_queue\":{},\"send_queue\":{}",
                s.recv_queue, s.send_queue
            );
            if let Some(a) = s.activity {
                let _ = write!(
                    self.line,
                    ",\"last_recv_ms\":{},\"last_sent_ms\":{},\"bytes_received\":{},\"bytes_sent\":{}",
                    a.last_recv_ms, a.last_sent_ms, a.bytes_received, a.bytes_sent
                );
            }
            self.line.push('}');
        } else {
            let status = match why {
                Some(why) if age_ms > 0 => format!("{status}: {why} ({age_ms} ms)"),
                Some(why) => format!("{status}: {why}"),
                None => status.to_string(),
            };
            let _ = writeln!(
                self.line,
                "{:<10} {:<22} {:<22} {:>6} {:<6} {:<6} {status}",
                s.state.name(),
                show(s.local),
                show(s.remote),
                s.uid,
                owner,
                direction
            );
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

    fn finish(&mut self, source: &str) {
        let t = &self.totals;
        if self.json {
            let _ = write!(
                self.line,
                "\n],\"summary\":{{\"source\":\"{source}\",\"busy\":{},\"idle\":{},\"app_listeners\":{},\"proxy_sockets\":{},\"closing\":{}}}}}\n",
                t.busy, t.idle, t.listeners, t.proxy, t.orphans
            );
        } else {
            let _ = writeln!(
                self.line,
                "\n{} app connections busy, {} idle; {} app listeners; {} proxy sockets; {} closing (source: {source})",
                t.busy, t.idle, t.listeners, t.proxy, t.orphans
            );
        }
        self.emit();
        if !self.closed {
            let _ = self.out.flush();
        }
    }
}

/// IPv4-mapped IPv6 addresses (dual-stack listeners) shown as the IPv4 address they carry.
fn show(addr: SocketAddr) -> String {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()).to_string(),
            None => addr.to_string(),
        },
        IpAddr::V4(_) => addr.to_string(),
    }
}

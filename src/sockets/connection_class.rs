//! Which connections hold a pod up: the proxy's own sockets are set aside, and each of the app's
//! connections is inbound or outbound, busy (work in flight) or idle.
//!
//! tcp_info gives, per connection, the milliseconds since data last arrived and since it was
//! last sent, and the byte and segment counters. A server socket that received after it last sent
//! owes an answer; a client socket that sent after it last received awaits one. The times tick
//! with the kernel's clock (1-4 ms), and on a fresh socket both date from the handshake, so ties
//! are common and are settled by the counters: data received with none sent is a pending first
//! request; otherwise more data segments in than out means the last request came in the same tick
//! as the answer before it (a reused keep-alive connection under load). That is exact where each
//! message is one segment, as on the loopback between a sidecar and its app.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use crate::sockets::port_set::PortSet;
use crate::sockets::{Socket, SocketView, TcpState, Which};

/// How the proxy's sockets are recognised.
#[derive(Clone, Debug)]
pub struct ProxyRules {
    pub uids: Vec<u32>,
    pub ports: PortSet,
    /// Ports the proxy connects to on any host (ztunnel's HBONE tunnels to its peers).
    pub peer_ports: PortSet,
}

impl ProxyRules {
    /// Owned by a proxy UID, bound to a proxy port, a loopback connection to a proxy port (the
    /// app talking to its sidecar's admin or status server), or a connection to a peer proxy's
    /// port.
    pub fn owns(&self, socket: &Socket) -> bool {
        self.uids.contains(&socket.uid)
            || self.ports.contains(socket.local.port())
            || (is_loopback(socket.remote.ip()) && self.ports.contains(socket.remote.port()))
            || self.peer_ports.contains(socket.remote.port())
    }
}

pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Its local port is one the app listens on: a client's request to the app.
    Inbound,
    /// Anything else the app holds: its calls to other services.
    Outbound,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Inbound => "in",
            Direction::Outbound => "out",
        }
    }
}

/// Why a connection counts as having work in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Busy {
    /// Bytes wait in its queues: unread by the app, or not yet acknowledged by the peer.
    Queued,
    /// Data moved within the quiet window (covers streams and pauses between chunks).
    Recent,
    /// Inbound: a request arrived after the last answer went out.
    Request,
    /// Outbound: the app sent after it last heard back, so it awaits the reply.
    AwaitingReply,
    /// Still connecting.
    Handshake,
    /// /proc/net/tcp carries no tcp_info: an open connection cannot be shown idle.
    Unknown,
}

impl Busy {
    pub fn name(self) -> &'static str {
        match self {
            Busy::Queued => "bytes queued",
            Busy::Recent => "data moved recently",
            Busy::Request => "request awaiting its answer",
            Busy::AwaitingReply => "awaiting the peer's reply",
            Busy::Handshake => "handshake",
            Busy::Unknown => "no tcp_info",
        }
    }
}

impl fmt::Display for Busy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one socket is, for draining purposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// The sidecar's own socket.
    Proxy,
    /// The app's listening socket.
    Listener,
    /// TIME_WAIT or unconnected: nothing can be in flight.
    Remnant,
    /// Closed by the app and finishing in the kernel (no process holds it any more).
    Orphan,
    /// One of the app's connections.
    App {
        direction: Direction,
        busy: Option<Busy>,
        /// How long the blocking condition has lasted, in ms (0 when idle or unknown).
        age_ms: u32,
    },
}

/// One pass over the namespace's sockets, each handed to `each` with its class (and the
/// classifier, for what else it can say about it). Listeners arrive first and teach the
/// classifier the app's ports, so a connection is inbound or outbound by the time it comes.
pub fn scan_classified(
    view: &mut SocketView,
    rules: &ProxyRules,
    quiet: Duration,
    each: &mut dyn FnMut(&Socket, Class, &Classifier<'_>),
) -> io::Result<()> {
    let mut classifier = Classifier::new(rules, PortSet::new(), quiet);
    view.scan(Which::ListenersThenConnections, &mut |s: &Socket| {
        if s.state == TcpState::Listen && !rules.owns(s) {
            classifier.learn_app_port(s.local.port());
        }
        each(s, classifier.classify(s), &classifier);
    })
}

/// Classifies sockets once the app's listening ports are known.
pub struct Classifier<'a> {
    rules: &'a ProxyRules,
    app_ports: PortSet,
    quiet_ms: u32,
}

impl<'a> Classifier<'a> {
    pub fn new(rules: &'a ProxyRules, app_ports: PortSet, quiet: Duration) -> Classifier<'a> {
        Classifier {
            rules,
            app_ports,
            quiet_ms: quiet.as_millis().min(u128::from(u32::MAX)) as u32,
        }
    }

    /// Adds a port the app listens on (connections to it are inbound).
    pub fn learn_app_port(&mut self, port: u16) {
        self.app_ports.insert(port);
    }

    pub fn classify(&self, socket: &Socket) -> Class {
        if self.rules.owns(socket) {
            return Class::Proxy;
        }
        match socket.state {
            TcpState::Listen => return Class::Listener,
            TcpState::TimeWait | TcpState::Close => return Class::Remnant,
            // inode 0 in these states: the app closed it; the kernel sends what is left on its
            // own, whatever happens to the app. (In ESTABLISHED, inode 0 instead means "not
            // accepted yet", which is a request waiting.)
            TcpState::FinWait1 | TcpState::FinWait2 | TcpState::Closing | TcpState::LastAck
                if socket.inode == 0 =>
            {
                return Class::Orphan;
            }
            _ => {}
        }
        let direction = if self.app_ports.contains(socket.local.port()) {
            Direction::Inbound
        } else {
            Direction::Outbound
        };
        let (busy, age_ms) = self.busy(socket, direction);
        Class::App {
            direction,
            busy,
            age_ms,
        }
    }

    fn busy(&self, socket: &Socket, direction: Direction) -> (Option<Busy>, u32) {
        if matches!(
            socket.state,
            TcpState::SynSent | TcpState::SynRecv | TcpState::NewSynRecv
        ) {
            return (Some(Busy::Handshake), 0);
        }
        let Some(a) = socket.activity else {
            return (Some(Busy::Unknown), 0);
        };
        let since_any = a.last_recv_ms.min(a.last_sent_ms);
        if socket.recv_queue > 0 || socket.send_queue > 0 {
            return (Some(Busy::Queued), since_any);
        }
        let tie = a.last_recv_ms == a.last_sent_ms;
        let (data_in, data_out) = a.data_segments.unwrap_or((0, 0));
        match direction {
            Direction::Inbound
                if a.received_any()
                    && (!a.sent_any()
                        || a.last_recv_ms < a.last_sent_ms
                        || (tie && data_in > data_out)) =>
            {
                (Some(Busy::Request), a.last_recv_ms)
            }
            Direction::Outbound
                if a.sent_any()
                    && (!a.received_any()
                        || a.last_sent_ms < a.last_recv_ms
                        || (tie && data_out > data_in)) =>
            {
                (Some(Busy::AwaitingReply), a.last_sent_ms)
            }
            // Checked last: the reasons above say more about what the app is waiting for.
            _ if since_any < self.quiet_ms => (Some(Busy::Recent), since_any),
            _ => (None, 0),
        }
    }

    /// Milliseconds until a connection that is busy only for having moved data recently turns
    /// idle, if that is its only reason; lets the drain look again exactly then.
    pub fn quiet_left_ms(&self, socket: &Socket) -> Option<u32> {
        let a = socket.activity?;
        Some(
            self.quiet_ms
                .saturating_sub(a.last_recv_ms.min(a.last_sent_ms)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sockets::Activity;
    use crate::sockets::port_set::PortRange;

    const APP_PORT: u16 = 8080;

    fn rules() -> ProxyRules {
        ProxyRules {
            uids: vec![1337],
            ports: PortSet::from_ranges(&[PortRange::new(15000, 15090)]),
            peer_ports: PortSet::new(),
        }
    }

    fn classifier(rules: &ProxyRules) -> Classifier<'_> {
        let mut app = PortSet::new();
        app.insert(APP_PORT);
        Classifier::new(rules, app, Duration::from_secs(1))
    }

    fn conn(local: u16, remote: &str, activity: Option<Activity>) -> Socket {
        Socket {
            state: TcpState::Established,
            local: format!("10.0.0.5:{local}").parse().unwrap(),
            remote: remote.parse().unwrap(),
            uid: 1000,
            inode: 42,
            recv_queue: 0,
            send_queue: 0,
            activity,
        }
    }

    fn act(recv: u32, sent: u32, bytes_in: u64, bytes_out: u64) -> Option<Activity> {
        Some(Activity {
            last_recv_ms: recv,
            last_sent_ms: sent,
            bytes_received: bytes_in,
            bytes_sent: bytes_out,
            // One segment per message, as on the loopback.
            data_segments: Some((
                bytes_in.div_ceil(100) as u32,
                bytes_out.div_ceil(100) as u32,
            )),
        })
    }

    fn with_segments(mut socket: Socket, data_in: u32, data_out: u32) -> Socket {
        if let Some(a) = socket.activity.as_mut() {
            a.data_segments = Some((data_in, data_out));
        }
        socket
    }

    fn busy(socket: &Socket) -> Option<Busy> {
        let r = rules();
        match classifier(&r).classify(socket) {
            Class::App { busy, .. } => busy,
            other => panic!("not an app connection: {other:?}"),
        }
    }

    #[test]
    fn a_connection_to_a_peer_proxy_port_is_the_proxys_on_any_address() {
        let mut rules = rules();
        rules.uids.clear();
        rules.peer_ports.insert(15008);
        let tunnel = Socket {
            uid: 0,
            ..conn(41000, "10.0.0.9:15008", None)
        };
        assert!(rules.owns(&tunnel));
        // The app calling a peer's other ports is the app's.
        assert!(!rules.owns(&conn(41000, "10.0.0.9:8080", None)));
    }

    #[test]
    fn proxy_sockets_by_uid_port_or_loopback_admin() {
        let r = rules();
        let c = classifier(&r);
        let mut s = conn(APP_PORT, "127.0.0.6:40000", act(5000, 5000, 10, 10));
        s.uid = 1337;
        assert_eq!(c.classify(&s), Class::Proxy);
        let s = conn(15006, "10.0.0.9:40000", None);
        assert_eq!(c.classify(&s), Class::Proxy);
        let s = conn(50000, "127.0.0.1:15020", None);
        assert_eq!(c.classify(&s), Class::Proxy);
        // The same port on another host is an ordinary outbound call.
        let s = conn(50000, "10.0.0.9:15020", act(5000, 5000, 1, 1));
        assert!(matches!(
            c.classify(&s),
            Class::App {
                direction: Direction::Outbound,
                ..
            }
        ));
    }

    #[test]
    fn inbound_request_waiting_is_busy_answered_is_idle() {
        // Received 2.5 s ago, answered before that: the answer is still owed.
        assert_eq!(
            busy(&conn(APP_PORT, "127.0.0.6:4000", act(2500, 9000, 300, 900))),
            Some(Busy::Request)
        );
        // Answered after the request arrived: an idle keep-alive connection.
        assert_eq!(
            busy(&conn(APP_PORT, "127.0.0.6:4000", act(9000, 2500, 300, 900))),
            None
        );
        // The same millisecond, both counters set: answered.
        assert_eq!(
            busy(&conn(APP_PORT, "127.0.0.6:4000", act(3000, 3000, 300, 900))),
            None
        );
    }

    #[test]
    fn first_request_on_a_fresh_socket_ties_on_time_but_not_on_bytes() {
        assert_eq!(
            busy(&conn(APP_PORT, "127.0.0.6:4000", act(3000, 3000, 120, 0))),
            Some(Busy::Request)
        );
        // Connected, nothing sent either way: an idle pre-opened connection.
        assert_eq!(
            busy(&conn(APP_PORT, "127.0.0.6:4000", act(3000, 3000, 0, 0))),
            None
        );
    }

    #[test]
    fn a_request_in_the_same_tick_as_the_previous_answer_is_pending() {
        // Two requests in, one answer out, the last two within one kernel tick.
        let s = with_segments(
            conn(APP_PORT, "127.0.0.6:4000", act(3000, 3000, 300, 900)),
            2,
            1,
        );
        assert_eq!(busy(&s), Some(Busy::Request));
        let s = with_segments(
            conn(APP_PORT, "127.0.0.6:4000", act(3000, 3000, 300, 900)),
            2,
            2,
        );
        assert_eq!(busy(&s), None);
        // The client side of the same exchange.
        let s = with_segments(conn(51000, "10.1.2.3:80", act(3000, 3000, 900, 300)), 1, 2);
        assert_eq!(busy(&s), Some(Busy::AwaitingReply));
        // A pre-opened connection on a kernel whose byte count includes the SYN: segments say
        // nothing was sent.
        let s = with_segments(conn(51000, "10.1.2.3:80", act(4000, 4000, 0, 1)), 0, 0);
        assert_eq!(busy(&s), None);
    }

    #[test]
    fn outbound_call_awaiting_its_reply() {
        assert_eq!(
            busy(&conn(51000, "10.1.2.3:5432", act(8000, 2000, 500, 600))),
            Some(Busy::AwaitingReply)
        );
        assert_eq!(
            busy(&conn(51000, "10.1.2.3:5432", act(2000, 8000, 500, 600))),
            None
        );
        // Sent, nothing ever came back.
        assert_eq!(
            busy(&conn(51000, "10.1.2.3:80", act(4000, 4000, 0, 80))),
            Some(Busy::AwaitingReply)
        );
        // A server that speaks first (greeting) and a client that has not asked anything yet.
        assert_eq!(
            busy(&conn(51000, "10.1.2.3:25", act(4000, 4000, 50, 0))),
            None
        );
    }

    #[test]
    fn queues_quiet_window_and_handshakes() {
        let mut s = conn(APP_PORT, "127.0.0.6:4000", act(9000, 2500, 300, 900));
        s.send_queue = 1;
        assert_eq!(busy(&s), Some(Busy::Queued));
        // A stream: the app sends without being asked, every few hundred ms.
        assert_eq!(
            busy(&conn(
                APP_PORT,
                "127.0.0.6:4000",
                act(9000, 200, 300, 90000)
            )),
            Some(Busy::Recent)
        );
        let mut s = conn(51000, "10.1.2.3:80", None);
        s.state = TcpState::SynSent;
        assert_eq!(busy(&s), Some(Busy::Handshake));
        assert_eq!(busy(&conn(51000, "10.1.2.3:80", None)), Some(Busy::Unknown));
    }

    /// Guards the drain's next look: a connection busy only for its recent data turns idle when
    /// the quiet window has passed since its last segment, and not before.
    #[test]
    fn quiet_window_left_counts_from_the_last_segment() {
        let r = rules();
        let c = classifier(&r);
        let s = conn(APP_PORT, "127.0.0.6:4000", act(300, 700, 10, 10));
        assert_eq!(c.quiet_left_ms(&s), Some(700));
        let s = conn(APP_PORT, "127.0.0.6:4000", act(5000, 4000, 10, 10));
        assert_eq!(c.quiet_left_ms(&s), Some(0));
        assert_eq!(
            c.quiet_left_ms(&conn(APP_PORT, "127.0.0.6:4000", None)),
            None
        );
    }

    /// Guards the names `conns` prints and the drain logs.
    #[test]
    fn names_as_printed() {
        assert_eq!(Direction::Inbound.name(), "in");
        assert_eq!(Direction::Outbound.name(), "out");
        assert_eq!(Busy::Request.name(), "request awaiting its answer");
        assert_eq!(Busy::Request.to_string(), "request awaiting its answer");
    }

    #[test]
    fn listeners_remnants_and_orphans_never_block() {
        let r = rules();
        let c = classifier(&r);
        let mut s = conn(APP_PORT, "0.0.0.0:0", None);
        s.state = TcpState::Listen;
        assert_eq!(c.classify(&s), Class::Listener);
        s.state = TcpState::TimeWait;
        assert_eq!(c.classify(&s), Class::Remnant);
        let mut s = conn(APP_PORT, "127.0.0.6:4000", act(1, 1, 1, 1));
        s.state = TcpState::FinWait1;
        s.inode = 0;
        s.send_queue = 100;
        assert_eq!(c.classify(&s), Class::Orphan);
        // Closing but still held by the app (its inode is set): the app may still read or write.
        s.inode = 42;
        assert!(
            matches!(c.classify(&s), Class::App { .. }),
            "{:?}",
            c.classify(&s)
        );
        // Not yet accepted: inode 0 but a request is waiting.
        let mut s = conn(APP_PORT, "127.0.0.6:4000", act(3000, 3000, 100, 0));
        s.inode = 0;
        s.recv_queue = 100;
        assert_eq!(busy(&s), Some(Busy::Queued));
    }
}

//! The pod's TCP sockets, as the kernel reports them. The only place that knows how sockets are
//! read: netlink sock_diag first (with tcp_info, so in-flight work is visible), `/proc/net/tcp{,6}`
//! when netlink is unavailable (gVisor, kernels without INET_DIAG).
//!
//! Scans stream: each socket is handed to a visitor as it is decoded from a fixed buffer and then
//! forgotten, so memory does not grow with the number of sockets.

pub mod connection_class;
mod netlink;
pub mod port_set;
mod procfs;

use std::io;
use std::net::SocketAddr;

/// The `component` of this module's log lines. Users filter logs by it, so it is fixed here,
/// not taken from the module path, which moves when the code is reorganised.
const LOG: &str = "sockets";

/// TCP states, numbered as in the kernel's `include/net/tcp_states.h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait1 = 4,
    FinWait2 = 5,
    TimeWait = 6,
    Close = 7,
    CloseWait = 8,
    LastAck = 9,
    Listen = 10,
    Closing = 11,
    /// A connection request not yet a socket (reported by sock_diag as such).
    NewSynRecv = 12,
}

impl TcpState {
    pub fn from_raw(raw: u8) -> Option<TcpState> {
        use TcpState::*;
        Some(match raw {
            1 => Established,
            2 => SynSent,
            3 => SynRecv,
            4 => FinWait1,
            5 => FinWait2,
            6 => TimeWait,
            7 => Close,
            8 => CloseWait,
            9 => LastAck,
            10 => Listen,
            11 => Closing,
            12 => NewSynRecv,
            _ => return None,
        })
    }

    /// The names `ss` and `netstat` print.
    pub fn name(self) -> &'static str {
        use TcpState::*;
        match self {
            Established => "ESTAB",
            SynSent => "SYN-SENT",
            SynRecv | NewSynRecv => "SYN-RECV",
            FinWait1 => "FIN-WAIT-1",
            FinWait2 => "FIN-WAIT-2",
            TimeWait => "TIME-WAIT",
            Close => "CLOSE",
            CloseWait => "CLOSE-WAIT",
            LastAck => "LAST-ACK",
            Listen => "LISTEN",
            Closing => "CLOSING",
        }
    }

    /// States of a connection, as opposed to listeners, TIME_WAIT remnants and unconnected
    /// sockets, none of which can have work in flight.
    pub fn is_connection(self) -> bool {
        !matches!(
            self,
            TcpState::Listen | TcpState::TimeWait | TcpState::Close
        )
    }
}

/// What tcp_info says about a connection's traffic; only netlink can see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Activity {
    /// Milliseconds since data last arrived. The kernel keeps these times in ticks (1-4 ms with
    /// HZ 1000-250), so two events within one tick read as simultaneous; on a fresh socket both
    /// times date from the handshake.
    pub last_recv_ms: u32,
    /// Milliseconds since data was last sent.
    pub last_sent_ms: u32,
    pub bytes_received: u64,
    /// tcpi_bytes_sent (4.19+), or tcpi_bytes_acked on older kernels (which counts a SYN too).
    pub bytes_sent: u64,
    /// Segments that carried data, received and sent (tcpi_data_segs_in/out, 4.6+).
    pub data_segments: Option<(u32, u32)>,
}

impl Activity {
    pub fn received_any(&self) -> bool {
        self.data_segments
            .map_or(self.bytes_received > 0, |(data_in, _)| data_in > 0)
    }

    pub fn sent_any(&self) -> bool {
        self.data_segments
            .map_or(self.bytes_sent > 0, |(_, data_out)| data_out > 0)
    }
}

/// One TCP socket of the network namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Socket {
    pub state: TcpState,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub uid: u32,
    /// 0 when no process holds the socket: not yet accepted, or closed and finishing in the kernel.
    pub inode: u64,
    /// Bytes received but not read by the owner (for a listener: connections waiting in accept).
    pub recv_queue: u32,
    /// Bytes written but not yet acknowledged by the peer.
    pub send_queue: u32,
    pub activity: Option<Activity>,
}

/// Where sockets are read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// netlink sock_diag, or /proc/net/tcp when netlink is refused.
    Auto,
    /// netlink sock_diag only (sees in-flight state).
    Netlink,
    /// /proc/net/tcp and tcp6 only (cannot see in-flight state).
    Proc,
}

const PROC_BLIND: &str = "reading /proc/net/tcp, which cannot see whether a request is in flight: \
                          every open connection counts as busy";

/// Which sockets a scan wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    Listening,
    /// Every state that `TcpState::is_connection` accepts, with tcp_info where available.
    Connections,
    /// Both, listeners first. Every source yields a family's listeners before its connections
    /// (the kernel walks its listening table before its connection table, in sock_diag and in
    /// /proc/net/tcp alike), so one pass can learn the app's ports and then classify against them.
    ListenersThenConnections,
}

/// A reader of the namespace's sockets that remembers which source works, so the fallback is
/// decided (and logged) once, not at every poll.
pub struct SocketView {
    wanted: Source,
    /// The source in use, once the first scan has found one.
    using: Option<Source>,
    warned: bool,
}

impl SocketView {
    pub fn new(wanted: Source) -> SocketView {
        SocketView {
            wanted,
            using: match wanted {
                Source::Auto => None,
                fixed => Some(fixed),
            },
            warned: false,
        }
    }

    /// Hands every socket matching `which` to `visit`.
    pub fn scan(&mut self, which: Which, visit: &mut dyn FnMut(&Socket)) -> io::Result<()> {
        match self.using {
            Some(Source::Proc) => {
                if !self.warned {
                    self.warned = true;
                    tracing::warn!(target: LOG, "{PROC_BLIND} (--sockets proc)");
                }
                procfs::scan(which, visit)
            }
            Some(_) => netlink::scan(which, visit),
            None => match netlink::scan(which, visit) {
                Ok(()) => {
                    self.using = Some(Source::Netlink);
                    Ok(())
                }
                Err(e) if netlink::is_unavailable(&e) => {
                    tracing::warn!(target: LOG, error = %e, "netlink sock_diag is unavailable; {PROC_BLIND}");
                    self.using = Some(Source::Proc);
                    self.warned = true;
                    procfs::scan(which, visit)
                }
                Err(e) => Err(e),
            },
        }
    }

    /// The source in use, for reports.
    pub fn source_name(&self) -> &'static str {
        match self.using.unwrap_or(self.wanted) {
            Source::Auto | Source::Netlink => "netlink",
            Source::Proc => "proc",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the kernel's state numbers (include/net/tcp_states.h) and the names `ss` prints:
    /// a lost arm dropped every socket in that state from the drain and from `conns`.
    #[test]
    fn every_kernel_state_number_has_its_state_and_name() {
        let names = [
            "ESTAB",
            "SYN-SENT",
            "SYN-RECV",
            "FIN-WAIT-1",
            "FIN-WAIT-2",
            "TIME-WAIT",
            "CLOSE",
            "CLOSE-WAIT",
            "LAST-ACK",
            "LISTEN",
            "CLOSING",
            "SYN-RECV",
        ];
        for (raw, name) in (1u8..).zip(names) {
            let state = TcpState::from_raw(raw).unwrap_or_else(|| panic!("state {raw}"));
            assert_eq!(state as u8, raw);
            assert_eq!(state.name(), name, "state {raw}");
        }
        assert_eq!(TcpState::from_raw(0), None);
        assert_eq!(TcpState::from_raw(13), None);
    }

    /// Guards both sources of "has data arrived": the data segment count where the kernel has
    /// it (4.6+), the byte count where it has not.
    #[test]
    fn data_received_and_sent_from_either_counter() {
        let none = Activity::default();
        assert!(!none.received_any() && !none.sent_any());
        let bytes = Activity {
            bytes_received: 1,
            bytes_sent: 1,
            ..Activity::default()
        };
        assert!(bytes.received_any() && bytes.sent_any());
        // With segment counts, a SYN's acknowledged byte is not data.
        let handshake_only = Activity {
            bytes_received: 0,
            bytes_sent: 1,
            data_segments: Some((0, 0)),
            ..Activity::default()
        };
        assert!(!handshake_only.received_any() && !handshake_only.sent_any());
        let segments = Activity {
            data_segments: Some((1, 1)),
            ..Activity::default()
        };
        assert!(segments.received_any() && segments.sent_any());
    }
}

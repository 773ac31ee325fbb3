//! `/proc/net/tcp` and `/proc/net/tcp6`: the fallback. The kernel formats these as text under a
//! lock per bucket, which is why tools built on them (netstat) are slow with many sockets, and
//! they carry no tcp_info, so they cannot tell an idle keep-alive connection from a request in
//! flight.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Socket, TcpState, Which};

pub fn scan(which: Which, visit: &mut dyn FnMut(&Socket)) -> io::Result<()> {
    let mut found_any = false;
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let file = match File::open(path) {
            Ok(file) => file,
            // No IPv6 in this kernel or namespace.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{path}: {e}"))),
        };
        found_any = true;
        let mut reader = BufReader::with_capacity(16 * 1024, file);
        let mut line = String::new();
        // The header line.
        reader.read_line(&mut line)?;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                break;
            }
            let Some(socket) = parse_line(&line) else {
                continue;
            };
            let wanted = match which {
                Which::Listening => socket.state == TcpState::Listen,
                Which::Connections => socket.state.is_connection(),
                Which::ListenersThenConnections => {
                    socket.state == TcpState::Listen || socket.state.is_connection()
                }
            };
            if wanted {
                visit(&socket);
            }
        }
    }
    if found_any {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            "neither /proc/net/tcp nor /proc/net/tcp6 exists (is /proc mounted?)",
        ))
    }
}

/// One line: `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`.
fn parse_line(line: &str) -> Option<Socket> {
    let mut fields = line.split_whitespace();
    let _slot = fields.next()?;
    let local = address(fields.next()?)?;
    let remote = address(fields.next()?)?;
    let state = TcpState::from_raw(u8::from_str_radix(fields.next()?, 16).ok()?)?;
    let (tx, rx) = fields.next()?.split_once(':')?;
    let _timer = fields.next()?;
    let _retransmits = fields.next()?;
    let uid = fields.next()?.parse().ok()?;
    let _timeout = fields.next()?;
    let inode = fields.next()?.parse().ok()?;
    Some(Socket {
        state,
        local,
        remote,
        uid,
        inode,
        recv_queue: u32::from_str_radix(rx, 16).ok()?,
        send_queue: u32::from_str_radix(tx, 16).ok()?,
        activity: None,
    })
}

/// `0100007F:1F90`: the address as the kernel's 32-bit words printed in host byte order, then
/// the port in hex.
fn address(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = addr.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_endian = "little")]
    fn parses_kernel_lines() {
        let v4 = "   1: 0100007F:1F90 0100007F:D2F0 01 0000000A:00000003 00:00000000 00000000  1337        0 48213 1 0000000000000000 20 4 30 10 -1";
        let s = parse_line(v4).unwrap();
        assert_eq!(s.local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s.remote, "127.0.0.1:54000".parse().unwrap());
        assert_eq!(s.state, TcpState::Established);
        assert_eq!((s.send_queue, s.recv_queue), (10, 3));
        assert_eq!((s.uid, s.inode), (1337, 48213));
        assert_eq!(s.activity, None);
        let v6 = "   0: 00000000000000000000000001000000:3A98 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0";
        let s = parse_line(v6).unwrap();
        assert_eq!(s.local, "[::1]:15000".parse().unwrap());
        assert_eq!(s.state, TcpState::Listen);
        let mapped = "   0: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0";
        let s = parse_line(mapped).unwrap();
        assert_eq!(s.local.ip().to_string(), "::ffff:127.0.0.1");
    }

    /// Guards the choice of sockets per scan: each kind asked for, and only it.
    #[test]
    fn a_scan_hands_on_what_was_asked_for() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let client_port = client.local_addr().unwrap().port();
        let seen = |which: Which| {
            let mut found = Vec::new();
            scan(which, &mut |s: &Socket| {
                if s.local.port() == port || s.local.port() == client_port {
                    found.push((s.local.port(), s.state));
                }
            })
            .unwrap();
            found.sort_by_key(|&(p, _)| p);
            found.dedup();
            found
        };
        let listening = seen(Which::Listening);
        assert_eq!(listening, [(port, TcpState::Listen)]);
        let connections = seen(Which::Connections);
        assert!(
            connections.contains(&(client_port, TcpState::Established)),
            "{connections:?}"
        );
        assert!(
            connections
                .iter()
                .all(|&(_, state)| state != TcpState::Listen),
            "{connections:?}"
        );
        let both = seen(Which::ListenersThenConnections);
        assert!(both.contains(&(port, TcpState::Listen)), "{both:?}");
        assert!(
            both.contains(&(client_port, TcpState::Established)),
            "{both:?}"
        );
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse_line("  sl  local_address rem_address   st"), None);
        assert_eq!(parse_line(""), None);
        assert_eq!(
            parse_line("0: 0100007F:1F90 0100007F:D2F0 FF 0:0 0:0 0 0 0 0"),
            None
        );
    }
}

//! netlink sock_diag (INET_DIAG): the kernel filters by state, and each connection comes with
//! its tcp_info, which holds the times since data last moved and the byte counters that tell a
//! request in flight from an idle keep-alive connection.
//!
//! Hand-written against the kernel's stable ABI (`linux/inet_diag.h`, `linux/tcp.h`): it is
//! decoded in place from the receive buffer, with no allocation per socket.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::{Activity, Socket, TcpState, Which};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// The original inet_diag request: its dump may name no family, and then one walk of the
/// kernel's connection table yields IPv4 and IPv6 sockets together (`ss` uses it for the same
/// reason). With SOCK_DIAG_BY_FAMILY each family needs its own walk of the whole table.
const TCPDIAG_GETSOCK: u16 = 18;
const INET_DIAG_INFO: u16 = 2;
const HEADER: usize = 16;
/// struct inet_diag_msg.
const DIAG_MSG: usize = 72;
/// The kernel sizes each dump message batch by the reader's buffer, up to 32 KiB; a bigger
/// buffer would not be filled.
const BUFFER: usize = 32 * 1024;

/// Byte offsets into struct tcp_info (`include/uapi/linux/tcp.h`), taken from libc's definition
/// of it rather than counted by hand. The kernel may send fewer bytes than libc's struct holds
/// (it grows with kernel versions), so every read is still checked against the length received.
mod tcp_info {
    use std::mem::offset_of;

    use libc::tcp_info as Info;

    pub const LAST_DATA_SENT: usize = offset_of!(Info, tcpi_last_data_sent);
    pub const LAST_DATA_RECV: usize = offset_of!(Info, tcpi_last_data_recv);
    /// Since 4.1.
    pub const BYTES_ACKED: usize = offset_of!(Info, tcpi_bytes_acked);
    pub const BYTES_RECEIVED: usize = offset_of!(Info, tcpi_bytes_received);
    /// Since 4.6.
    pub const DATA_SEGS_IN: usize = offset_of!(Info, tcpi_data_segs_in);
    pub const DATA_SEGS_OUT: usize = offset_of!(Info, tcpi_data_segs_out);
    /// Since 4.19.
    pub const BYTES_SENT: usize = offset_of!(Info, tcpi_bytes_sent);
}

pub fn scan(which: Which, visit: &mut dyn FnMut(&Socket)) -> io::Result<()> {
    let socket = open()?;
    let mut buffer = vec![0u8; BUFFER];
    let mut seen = 0u64;
    let mut counting = |s: &Socket| {
        seen += 1;
        visit(s);
    };
    match dump(&socket, &both_families(which), &mut buffer, &mut counting) {
        Ok(()) => return Ok(()),
        // A kernel that dropped the old request type: ask per family. Only before anything was
        // handed on, or the caller would see sockets twice.
        Err(e)
            if seen == 0
                && matches!(
                    e.raw_os_error(),
                    Some(libc::EINVAL | libc::EOPNOTSUPP | libc::ENOENT)
                ) => {}
        Err(e) => return Err(e),
    }
    dump(
        &socket,
        &one_family(libc::AF_INET as u8, which),
        &mut buffer,
        visit,
    )?;
    match dump(
        &socket,
        &one_family(libc::AF_INET6 as u8, which),
        &mut buffer,
        visit,
    ) {
        // No IPv6 in this kernel: nothing to see there.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EAFNOSUPPORT)) => Ok(()),
        other => other,
    }
}

/// Errors that mean "this kernel or sandbox has no sock_diag", as opposed to a failed scan.
pub fn is_unavailable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EPROTONOSUPPORT
                | libc::EAFNOSUPPORT
                | libc::EPERM
                | libc::EACCES
                | libc::ENOENT
                | libc::EOPNOTSUPP
                | libc::ENOSYS
                | libc::EINVAL
        )
    )
}

/// Longest wait for one datagram of a dump: the kernel answers in microseconds, but a scan runs
/// while a stop signal is held, and nothing may stall that unboundedly.
const RECV_TIMEOUT: libc::timeval = libc::timeval {
    tv_sec: 2,
    tv_usec: 0,
};

fn open() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: the option value is a valid timeval of the given size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&RECV_TIMEOUT as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

/// The states a scan asks the kernel for, as the bitmask inet_diag filters on.
fn states(which: Which) -> u32 {
    match which {
        Which::Listening => 1 << TcpState::Listen as u32,
        Which::Connections => (1..=12u8)
            .filter_map(TcpState::from_raw)
            .filter(|s| s.is_connection())
            .fold(0, |mask, s| mask | 1 << s as u32),
        Which::ListenersThenConnections => states(Which::Listening) | states(Which::Connections),
    }
}

fn extensions(which: Which) -> u8 {
    match which {
        Which::Connections | Which::ListenersThenConnections => 1 << (INET_DIAG_INFO - 1),
        Which::Listening => 0,
    }
}

/// A dump request: the netlink header, then `body`.
fn request(kind: u16, body: [u8; 60]) -> [u8; HEADER + 60] {
    let mut msg = [0u8; HEADER + 60];
    msg[0..4].copy_from_slice(&((HEADER + 60) as u32).to_ne_bytes());
    msg[4..6].copy_from_slice(&kind.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    msg[6..8].copy_from_slice(&flags.to_ne_bytes());
    msg[HEADER..].copy_from_slice(&body);
    msg
}

/// struct inet_diag_req: family 0 (both), address lengths, extensions, a zero sockid (match
/// everything), states, and no socket cookie. TCP is implied by the message type.
fn both_families(which: Which) -> [u8; HEADER + 60] {
    let mut body = [0u8; 60];
    body[3] = extensions(which);
    body[52..56].copy_from_slice(&states(which).to_ne_bytes());
    request(TCPDIAG_GETSOCK, body)
}

/// struct inet_diag_req_v2: family, protocol, extensions, pad, states, a zero sockid; the
/// kernel reads 56 bytes and ignores the padding after them.
fn one_family(family: u8, which: Which) -> [u8; HEADER + 60] {
    let mut body = [0u8; 60];
    body[0] = family;
    body[1] = libc::IPPROTO_TCP as u8;
    body[2] = extensions(which);
    body[4..8].copy_from_slice(&states(which).to_ne_bytes());
    let mut msg = request(SOCK_DIAG_BY_FAMILY, body);
    // The header must give the v2 request's own length.
    msg[0..4].copy_from_slice(&((HEADER + 56) as u32).to_ne_bytes());
    msg
}

fn dump(
    socket: &OwnedFd,
    request: &[u8],
    buffer: &mut [u8],
    visit: &mut dyn FnMut(&Socket),
) -> io::Result<()> {
    let length = u32_at(request, 0) as usize;
    let msg = &request[..length];
    // SAFETY: an all-zero sockaddr_nl is valid; it is then addressed to the kernel (pid 0).
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: the message and address are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    loop {
        // SAFETY: the buffer is valid for its length.
        let n = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "sock_diag did not answer within 2s",
                    ));
                }
                _ => return Err(e),
            }
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "sock_diag closed the dump",
            ));
        }
        if decode_batch(&buffer[..n as usize], visit)? {
            return Ok(());
        }
    }
}

/// Decodes one datagram of the dump; true once the kernel says the dump is done.
fn decode_batch(mut data: &[u8], visit: &mut dyn FnMut(&Socket)) -> io::Result<bool> {
    while data.len() >= HEADER {
        let len = u32_at(data, 0) as usize;
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        if len < HEADER || len > data.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "sock_diag sent a malformed message",
            ));
        }
        let body = &data[HEADER..len];
        match kind {
            // A dump that failed part-way ends with DONE carrying the negative errno.
            k if k == libc::NLMSG_DONE as u16 => {
                let errno = body
                    .get(0..4)
                    .map_or(0, |b| -i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                if errno > 0 {
                    return Err(io::Error::from_raw_os_error(errno));
                }
                return Ok(true);
            }
            k if k == libc::NLMSG_ERROR as u16 => {
                let errno = body
                    .get(0..4)
                    .map_or(0, |b| -i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                if errno != 0 {
                    return Err(io::Error::from_raw_os_error(errno));
                }
            }
            SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK => {
                if let Some(socket) = decode_socket(body) {
                    visit(&socket);
                }
            }
            _ => {}
        }
        data = &data[align(len).min(data.len())..];
    }
    Ok(false)
}

fn decode_socket(msg: &[u8]) -> Option<Socket> {
    if msg.len() < DIAG_MSG {
        return None;
    }
    let state = TcpState::from_raw(msg[1])?;
    let ip = |at: usize| -> Option<IpAddr> {
        match i32::from(msg[0]) {
            libc::AF_INET => Some(IpAddr::V4(Ipv4Addr::new(
                msg[at],
                msg[at + 1],
                msg[at + 2],
                msg[at + 3],
            ))),
            libc::AF_INET6 => {
                let bytes: [u8; 16] = msg[at..at + 16].try_into().ok()?;
                Some(IpAddr::V6(Ipv6Addr::from(bytes)))
            }
            _ => None,
        }
    };
    // struct inet_diag_sockid: ports in network byte order, then source and destination.
    let local = SocketAddr::new(ip(8)?, u16::from_be_bytes([msg[4], msg[5]]));
    let remote = SocketAddr::new(ip(24)?, u16::from_be_bytes([msg[6], msg[7]]));
    let mut socket = Socket {
        state,
        local,
        remote,
        recv_queue: u32_at(msg, 56),
        send_queue: u32_at(msg, 60),
        uid: u32_at(msg, 64),
        inode: u64::from(u32_at(msg, 68)),
        activity: None,
    };
    let mut attrs = &msg[DIAG_MSG..];
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            break;
        }
        if kind == INET_DIAG_INFO {
            socket.activity = activity(&attrs[4..len]);
        }
        attrs = &attrs[align(len).min(attrs.len())..];
    }
    Some(socket)
}

/// The fields of tcp_info that classification needs. Kernels append to the struct and report
/// its length, so newer fields are read only when present.
fn activity(info: &[u8]) -> Option<Activity> {
    if info.len() < tcp_info::LAST_DATA_RECV + 4 {
        return None;
    }
    let u64_if = |at: usize| (info.len() >= at + 8).then(|| u64_at(info, at));
    let data_segments = (info.len() >= tcp_info::DATA_SEGS_OUT + 4).then(|| {
        (
            u32_at(info, tcp_info::DATA_SEGS_IN),
            u32_at(info, tcp_info::DATA_SEGS_OUT),
        )
    });
    Some(Activity {
        last_sent_ms: u32_at(info, tcp_info::LAST_DATA_SENT),
        last_recv_ms: u32_at(info, tcp_info::LAST_DATA_RECV),
        bytes_received: u64_if(tcp_info::BYTES_RECEIVED).unwrap_or(0),
        bytes_sent: u64_if(tcp_info::BYTES_SENT)
            .or_else(|| u64_if(tcp_info::BYTES_ACKED))
            .unwrap_or(0),
        data_segments,
    })
}

fn align(len: usize) -> usize {
    (len + 3) & !3
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&data[at..at + 8]);
    u64::from_ne_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the whole path through the kernel, which the decoding tests feed by hand: the
    /// request, both families, every field of a real socket, and tcp_info's counters. Many
    /// mistakes in the offsets, lengths and alignment showed only here.
    #[test]
    fn a_real_scan_reads_every_field_of_both_families() {
        use std::io::{Read, Write};
        use std::os::unix::fs::MetadataExt;
        // 127.1.2.3, not 127.0.0.1: zeros in the middle would hide an octet read from the wrong
        // place.
        for host in ["127.1.2.3", "::1"] {
            let Ok(listener) = std::net::TcpListener::bind((host, 0)) else {
                continue; // no IPv6 here
            };
            let server_addr = listener.local_addr().unwrap();
            let mut client = std::net::TcpStream::connect(server_addr).unwrap();
            let (mut server, _) = listener.accept().unwrap();
            client.write_all(&[7u8; 300]).unwrap();
            let mut got = [0u8; 300];
            server.read_exact(&mut got).unwrap();
            server.write_all(&[9u8; 1000]).unwrap();
            let mut back = [0u8; 1000];
            client.read_exact(&mut back).unwrap();
            let client_addr = client.local_addr().unwrap();
            // Unread bytes: the client's receive queue.
            server.write_all(&[1u8; 50]).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));

            let mut found = Vec::new();
            scan(Which::ListenersThenConnections, &mut |s: &Socket| {
                if [s.local, s.remote].contains(&server_addr) {
                    found.push(*s);
                }
            })
            .unwrap();
            // SAFETY: getuid only reads.
            let me = unsafe { libc::getuid() };
            let listening: Vec<_> = found
                .iter()
                .filter(|s| s.state == TcpState::Listen)
                .collect();
            assert_eq!(listening.len(), 1, "{host}: {found:?}");
            assert_eq!(listening[0].local, server_addr);
            let c = found
                .iter()
                .find(|s| s.local == client_addr)
                .unwrap_or_else(|| panic!("{host}: no client socket in {found:?}"));
            assert_eq!(c.state, TcpState::Established);
            assert_eq!(c.remote, server_addr);
            assert_eq!(c.uid, me);
            let inode = std::fs::metadata(format!("/proc/self/fd/{}", client.as_raw_fd()))
                .unwrap()
                .ino();
            assert_eq!(c.inode, inode, "{host}");
            assert_eq!(c.recv_queue, 50, "{host}");
            assert_eq!(c.send_queue, 0, "{host}");
            let a = c.activity.expect("tcp_info");
            assert_eq!(a.bytes_received, 1050, "{host}: {a:?}");
            assert_eq!(a.bytes_sent, 300, "{host}: {a:?}");
            assert_eq!(
                a.data_segments.map(|(i, o)| (i >= 2, o >= 1)),
                Some((true, true))
            );
            assert!(a.last_recv_ms < 5_000 && a.last_sent_ms < 5_000, "{a:?}");
            assert!(a.last_recv_ms <= a.last_sent_ms, "{a:?}");
            let s = found
                .iter()
                .find(|s| s.local == server_addr && s.state == TcpState::Established)
                .unwrap();
            assert_eq!(s.remote, client_addr);
            assert_eq!(s.activity.unwrap().bytes_received, 300);
            // Without tcp_info asked for, a listener's message is the bare inet_diag_msg.
            let mut listeners = Vec::new();
            scan(Which::Listening, &mut |s: &Socket| {
                if s.local == server_addr {
                    listeners.push(*s);
                }
            })
            .unwrap();
            assert_eq!(listeners.len(), 1, "{host}: {listeners:?}");
            assert_eq!(listeners[0].state, TcpState::Listen);
        }
    }

    /// A socket message: inet_diag_msg (IPv4 127.0.0.1:80 to 127.0.0.1:81, established), then
    /// `attrs`.
    fn socket_msg(attrs: &[u8]) -> Vec<u8> {
        let mut msg = vec![0u8; DIAG_MSG];
        msg[0] = libc::AF_INET as u8;
        msg[1] = TcpState::Established as u8;
        msg[4..6].copy_from_slice(&80u16.to_be_bytes());
        msg[6..8].copy_from_slice(&81u16.to_be_bytes());
        msg[8..12].copy_from_slice(&[127, 0, 0, 1]);
        msg[24..28].copy_from_slice(&[127, 0, 0, 1]);
        msg.extend_from_slice(attrs);
        msg
    }

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let len = 4 + payload.len();
        let mut a = Vec::new();
        a.extend_from_slice(&(len as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(payload);
        a.resize(align(len), 0);
        a
    }

    /// Guards the reads inside what the kernel sent: tcp_info grows with kernel versions, and a
    /// field past its end is absent, never read out of bounds.
    #[test]
    fn tcp_info_is_read_only_as_far_as_it_goes() {
        assert_eq!(activity(&[0u8; 20]), None);
        assert_eq!(activity(&[0u8; 50]), None);
        assert_eq!(activity(&[0u8; tcp_info::LAST_DATA_RECV + 3]), None);
        let old = activity(&[0u8; tcp_info::LAST_DATA_RECV + 4]).unwrap();
        assert_eq!((old.bytes_received, old.data_segments), (0, None));
        let mut info = vec![0u8; tcp_info::DATA_SEGS_OUT + 3];
        info[tcp_info::DATA_SEGS_IN..tcp_info::DATA_SEGS_IN + 4]
            .copy_from_slice(&5u32.to_ne_bytes());
        assert_eq!(activity(&info).unwrap().data_segments, None);
        info.resize(tcp_info::DATA_SEGS_OUT + 4, 0);
        assert_eq!(activity(&info).unwrap().data_segments, Some((5, 0)));
        let mut info = vec![0u8; 160];
        info[tcp_info::BYTES_RECEIVED..tcp_info::BYTES_RECEIVED + 8]
            .copy_from_slice(&77u64.to_ne_bytes());
        info[tcp_info::BYTES_ACKED..tcp_info::BYTES_ACKED + 8].copy_from_slice(&9u64.to_ne_bytes());
        let a = activity(&info).unwrap();
        assert_eq!(
            (a.bytes_received, a.bytes_sent),
            (77, 9),
            "before 4.19: bytes acked"
        );
        // A counter cut off by the end of the struct is absent.
        let cut = activity(&[0u8; tcp_info::BYTES_RECEIVED + 2]).unwrap();
        assert_eq!(cut.bytes_received, 0);
    }

    /// Guards the offsets: every field is read where the struct has it. The fields read all lie
    /// in the first 256 bytes, each of which differs from the others, so a field read at any
    /// other offset reads another value.
    #[test]
    fn tcp_info_fields_are_read_where_the_struct_has_them() {
        const { assert!(tcp_info::BYTES_SENT + 8 <= 256) };
        let bytes: Vec<u8> = (0..size_of::<libc::tcp_info>()).map(|i| i as u8).collect();
        // SAFETY: `bytes` holds size_of::<tcp_info>() bytes, read unaligned, and tcp_info is
        // integers only, for which any bytes are a valid value.
        let info: libc::tcp_info = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let a = activity(&bytes).unwrap();
        assert_eq!(a.last_sent_ms, info.tcpi_last_data_sent);
        assert_eq!(a.last_recv_ms, info.tcpi_last_data_recv);
        assert_eq!(a.bytes_received, info.tcpi_bytes_received);
        assert_eq!(a.bytes_sent, info.tcpi_bytes_sent);
        assert_eq!(
            a.data_segments,
            Some((info.tcpi_data_segs_in, info.tcpi_data_segs_out))
        );
        // Before 4.19 the bytes sent are the bytes acked.
        let before_bytes_sent = activity(&bytes[..tcp_info::BYTES_SENT]).unwrap();
        assert_eq!(before_bytes_sent.bytes_sent, info.tcpi_bytes_acked);
    }

    /// Guards the attribute walk: an empty attribute before tcp_info is stepped over, and a
    /// malformed length ends the walk instead of reading past it.
    #[test]
    fn attributes_are_walked_by_their_own_lengths() {
        let mut info = vec![0u8; tcp_info::LAST_DATA_RECV + 4];
        info[tcp_info::LAST_DATA_SENT..tcp_info::LAST_DATA_SENT + 4]
            .copy_from_slice(&1234u32.to_ne_bytes());
        let mut attrs = attr(99, &[]);
        attrs.extend(attr(INET_DIAG_INFO, &info));
        let s = decode_socket(&socket_msg(&attrs)).unwrap();
        assert_eq!(s.activity.map(|a| a.last_sent_ms), Some(1234));
        // A bare inet_diag_msg, no attribute at all, is a socket all the same.
        assert!(decode_socket(&socket_msg(&[])).is_some());
        assert_eq!(s.local, "127.0.0.1:80".parse().unwrap());
        for bad_len in [0u16, 2, 3, 5000] {
            let mut attrs = bad_len.to_ne_bytes().to_vec();
            attrs.extend_from_slice(&INET_DIAG_INFO.to_ne_bytes());
            attrs.extend_from_slice(&[0u8; 8]);
            let s = decode_socket(&socket_msg(&attrs)).unwrap();
            assert_eq!(s.activity, None, "length {bad_len}");
        }
    }

    #[test]
    fn state_filter_excludes_listeners_and_remnants() {
        let mask = states(Which::Connections);
        for excluded in [TcpState::Listen, TcpState::TimeWait, TcpState::Close] {
            assert_eq!(mask & (1 << excluded as u32), 0, "{excluded:?}");
        }
        assert_ne!(mask & (1 << TcpState::Established as u32), 0);
        assert_eq!(states(Which::Listening), 1 << 10);
    }

    #[test]
    fn error_message_becomes_the_errno() {
        let mut msg = vec![0u8; HEADER + 4];
        msg[0..4].copy_from_slice(&((HEADER + 4) as u32).to_ne_bytes());
        msg[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        msg[HEADER..].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        let err = decode_batch(&msg, &mut |_| {}).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
        assert!(is_unavailable(&err));
    }

    #[test]
    fn a_dump_that_failed_part_way_is_an_error() {
        let mut msg = vec![0u8; HEADER + 4];
        msg[0..4].copy_from_slice(&((HEADER + 4) as u32).to_ne_bytes());
        msg[4..6].copy_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
        assert!(decode_batch(&msg, &mut |_| {}).unwrap());
        msg[HEADER..].copy_from_slice(&(-libc::EINTR).to_ne_bytes());
        let err = decode_batch(&msg, &mut |_| {}).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EINTR));
    }

    #[test]
    fn truncated_message_is_an_error_not_a_panic() {
        let mut msg = vec![0u8; HEADER];
        msg[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(decode_batch(&msg, &mut |_| {}).is_err());
        // A length shorter than the header itself.
        msg[0..4].copy_from_slice(&8u32.to_ne_bytes());
        assert!(decode_batch(&msg, &mut |_| {}).is_err());
        // A header alone, of a kind this reader ignores, is no error.
        msg[0..4].copy_from_slice(&(HEADER as u32).to_ne_bytes());
        msg[4..6].copy_from_slice(&0x99u16.to_ne_bytes());
        assert!(!decode_batch(&msg, &mut |_| {}).unwrap());
        // A socket message too short for inet_diag_msg is skipped.
        assert_eq!(decode_socket(&[0u8; 10]), None);
    }
}

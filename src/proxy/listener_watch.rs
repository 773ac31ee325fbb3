//! Probing at the moment the proxy starts listening, instead of at the next tick of the schedule.
//!
//! A readiness probe at a fixed rate finds the proxy ready, on average, half an interval after it
//! became ready: 25 ms at 20 probes/s, whatever the schedule. Envoy starts listening on its
//! capture ports (Istio 15001/15006) in the same step that makes it ready, and the app shares the
//! pod's network namespace, so the app's side can see that moment. A listeners-only sock_diag
//! dump skips the connection table and costs about 40 µs here (16,384 listening-hash buckets),
//! so looking every few milliseconds is cheap. What it finds only moves the next probe forward:
//! readiness is still whatever the readiness URL answers.

use std::time::Duration;

use crate::sockets::{SocketView, Source, TcpState, Which};

/// How often the listening table is looked at while the gate waits.
pub const EVERY: Duration = Duration::from_millis(5);

pub struct ListenerWatch {
    view: SocketView,
    ports: Vec<u16>,
}

impl ListenerWatch {
    /// `None` when there is nothing to watch.
    pub fn new(ports: &[u16]) -> Option<ListenerWatch> {
        (!ports.is_empty()).then(|| ListenerWatch {
            // netlink only: the /proc fallback costs a file read per look, too much for this.
            view: SocketView::new(Source::Netlink),
            ports: ports.to_vec(),
        })
    }

    /// Whether any watched port has a listener now. An error (no netlink, e.g. under gVisor)
    /// is returned so that the caller can stop watching; the gate works without it.
    pub fn listening(&mut self) -> std::io::Result<bool> {
        let mut found = false;
        let ports = &self.ports;
        self.view.scan(Which::Listening, &mut |s| {
            if s.state == TcpState::Listen && ports.contains(&s.local.port()) {
                found = true;
            }
        })?;
        Ok(found)
    }
}

//! Envoy's own count of the requests in flight: its admin `GET /clusters`, read as it streams by.
//!
//! Every upstream host of every cluster is listed with live gauges, one per line:
//! `inbound|8080||::127.0.0.1:8080::rq_active::1`. A request or gRPC stream that Envoy forwards
//! counts in `rq_active` of the host it went to until it ends, which is exactly what the kernel's
//! sockets cannot show on a multiplexed HTTP/2 connection or between the chunks of a stream. The
//! list is not subject to a stats matcher (Istio's default one drops
//! `cluster.*.upstream_rq_active` from `/stats`), so it is there in every Istio sidecar.
//!
//! The page grows with the mesh (thousands of clusters without Sidecar scoping), so it is never
//! held whole: lines are parsed as the body arrives, and only clusters with requests in flight
//! are kept, a bounded number of them by name.

use std::fmt;
use std::net::SocketAddr;

use crate::sockets::connection_class::is_loopback;
use crate::sockets::port_set::PortSet;

/// Clusters kept by name in one reading; the rest are counted together.
pub const NAMED: usize = 16;
/// The longest line kept across chunk boundaries. Istio's longest cluster names (an outbound
/// cluster with a subset and a 253-byte host name) and an IPv6 address fit well inside.
const LINE_MAX: usize = 1024;

/// Whose requests a cluster carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Clients calling the app: Envoy forwards them to the app.
    Inbound,
    /// The app's own calls, forwarded by Envoy to other services.
    Outbound,
    /// The proxy's own upstreams: xDS, SDS, tracing, its agent. Never the app's work.
    Proxy,
}

/// Tells the app's clusters from the proxy's own.
#[derive(Clone, Debug)]
pub struct ClusterRules {
    /// Ports that belong to the proxy (a loopback host on one of them is the proxy's own agent).
    pub proxy_ports: PortSet,
    /// Istio names every cluster of the app's: a loopback host under another name is some other
    /// local service of the proxy's (an ext_authz agent, a tracing collector), not the app.
    pub names_only: bool,
}

impl ClusterRules {
    /// Istio's names first (`inbound|PORT|...`, `InboundPassthroughCluster*`, `outbound|...`,
    /// `PassthroughCluster`); otherwise, unless `names_only`, a host on the loopback that is not a
    /// proxy port is the app behind its sidecar (how a plain Envoy sidecar reaches it); anything
    /// else is the proxy's.
    pub fn flow(&self, cluster: &str, host: &str) -> Flow {
        if cluster.starts_with("inbound|") || cluster.starts_with("InboundPassthroughCluster") {
            return Flow::Inbound;
        }
        if cluster.starts_with("outbound|") || cluster == "PassthroughCluster" {
            return Flow::Outbound;
        }
        if self.names_only {
            return Flow::Proxy;
        }
        match host.parse::<SocketAddr>() {
            Ok(addr) if is_loopback(addr.ip()) && !self.proxy_ports.contains(addr.port()) => {
                Flow::Inbound
            }
            _ => Flow::Proxy,
        }
    }
}

/// Requests in flight on one cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Active {
    pub cluster: String,
    pub flow: Flow,
    pub requests: u32,
}

/// One reading of `/clusters`: the clusters with requests in flight.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    /// Up to `NAMED` clusters, in the order Envoy lists them.
    pub active: Vec<Active>,
    /// Requests on clusters past the first `NAMED`: (inbound, outbound).
    pub unnamed: (u32, u32),
    /// Clusters listed, active or not.
    pub clusters: u32,
    /// Size of the page.
    pub bytes: u64,
}

impl Reading {
    pub fn total(&self, flow: Flow) -> u32 {
        let named: u32 = self
            .active
            .iter()
            .filter(|a| a.flow == flow)
            .map(|a| a.requests)
            .sum();
        named
            + match flow {
                Flow::Inbound => self.unnamed.0,
                Flow::Outbound => self.unnamed.1,
                Flow::Proxy => 0,
            }
    }
}

/// Why a page is not a reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotClusters {
    /// Not one line had Envoy's `cluster::...::stat::value` shape.
    Unrecognised,
}

impl fmt::Display for NotClusters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotClusters::Unrecognised => f.write_str("the answer is not Envoy's /clusters list"),
        }
    }
}

/// Parses `/clusters` chunk by chunk in constant memory.
pub struct Parser {
    rules: ClusterRules,
    /// The tail of the previous chunk: a line not yet complete.
    partial: Vec<u8>,
    /// Set while the rest of an over-long line is being skipped.
    skipping: bool,
    /// The cluster whose lines are being read, and its requests so far. Envoy lists a cluster's
    /// lines together, so a cluster is complete when the next one starts.
    current: Option<Active>,
    recognised: bool,
    reading: Reading,
}

impl Parser {
    pub fn new(rules: ClusterRules) -> Parser {
        Parser {
            rules,
            partial: Vec::new(),
            skipping: false,
            current: None,
            recognised: false,
            reading: Reading::default(),
        }
    }

    /// Takes the next piece of the body, wherever it was cut.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        self.reading.bytes += chunk.len() as u64;
        while let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            let (head, rest) = (&chunk[..end], &chunk[end + 1..]);
            if self.skipping {
                self.skipping = false;
            } else if self.partial.is_empty() {
                self.line(head);
            } else if self.partial.len() + head.len() <= LINE_MAX {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(head);
                self.line(&whole);
                whole.clear();
                self.partial = whole;
            } else {
                self.partial.clear();
            }
            chunk = rest;
        }
        if self.skipping {
            return;
        }
        if self.partial.len() + chunk.len() > LINE_MAX {
            // No line of interest is this long: drop it rather than grow.
            self.partial.clear();
            self.skipping = true;
        } else {
            self.partial.extend_from_slice(chunk);
        }
    }

    /// The reading, once the body has ended.
    pub fn finish(mut self) -> Result<Reading, NotClusters> {
        if !self.skipping && !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            self.line(&last);
        }
        self.close_cluster();
        if !self.recognised {
            return Err(NotClusters::Unrecognised);
        }
        Ok(self.reading)
    }

    /// Called for every line of a page that is megabytes long in a big mesh, so the common case
    /// is kept to a few byte comparisons: a line of the cluster already being read, whose stat
    /// is not a non-zero `rq_active`.
    fn line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // `CLUSTER::HOST::STAT::VALUE` for host gauges, `CLUSTER::SETTING::VALUE` (or deeper)
        // for the cluster's own lines. Cluster names never hold "::"; IPv6 hosts are bracketed.
        let same_cluster = self.current.as_ref().is_some_and(|c| {
            let name = c.cluster.as_bytes();
            line.len() > name.len() + 2
                && line.starts_with(name)
                && line[name.len()..].starts_with(b"::")
        });
        let name_len = if same_cluster {
            self.current.as_ref().map_or(0, |c| c.cluster.len())
        } else {
            let Some(at) = find_pair(line) else {
                return;
            };
            let Ok(cluster) = std::str::from_utf8(&line[..at]) else {
                return;
            };
            if cluster.is_empty() || line.len() == at + 2 {
                return;
            }
            self.recognised = true;
            self.close_cluster();
            self.reading.clusters += 1;
            self.current = Some(Active {
                cluster: cluster.to_string(),
                flow: Flow::Proxy,
                requests: 0,
            });
            at
        };
        // The value is after the last "::", the stat name before it.
        let Some(colon) = line.iter().rposition(|&b| b == b':') else {
            return;
        };
        let (head, value) = (&line[..colon + 1], &line[colon + 1..]);
        if value == b"0" || !head.ends_with(b"::rq_active::") {
            return;
        }
        let Some(requests) = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
        else {
            return;
        };
        if requests == 0 {
            return;
        }
        let host_start = name_len + 2;
        let host_end = head.len() - b"::rq_active::".len();
        if host_end < host_start {
            return;
        }
        let host = std::str::from_utf8(&line[host_start..host_end]).unwrap_or("");
        let Some(current) = self.current.as_mut() else {
            return;
        };
        let flow = self.rules.flow(&current.cluster, host);
        // A cluster's flow is its first busy host's: Istio's clusters are one-sided.
        if current.requests == 0 {
            current.flow = flow;
        }
        current.requests = current.requests.saturating_add(requests);
    }

    fn close_cluster(&mut self) {
        let Some(done) = self.current.take() else {
            return;
        };
        if done.requests == 0 || done.flow == Flow::Proxy {
            return;
        }
        if self.reading.active.len() < NAMED {
            self.reading.active.push(done);
            return;
        }
        let slot = match done.flow {
            Flow::Inbound => &mut self.reading.unnamed.0,
            _ => &mut self.reading.unnamed.1,
        };
        *slot = slot.saturating_add(done.requests);
    }
}

/// Where the first "::" starts.
fn find_pair(line: &[u8]) -> Option<usize> {
    line.windows(2).position(|w| w == b"::")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sockets::port_set::PortRange;

    fn rules() -> ClusterRules {
        ClusterRules {
            proxy_ports: PortSet::from_ranges(&[PortRange::new(15000, 15090)]),
            names_only: false,
        }
    }

    /// Lines as Envoy 1.40 writes them (captured from the simulated pod's sidecar with a gRPC
    /// stream open on the inbound cluster and an outbound call through the passthrough).
    const PAGE: &str = "xds-grpc::observability_name::xds-grpc
xds-grpc::default_priority::max_connections::1024
xds-grpc::127.0.0.1:15010::cx_active::1
xds-grpc::127.0.0.1:15010::rq_active::1
xds-grpc::127.0.0.1:15010::hostname::
PassthroughCluster::observability_name::PassthroughCluster
PassthroughCluster::10.89.0.1:8081::cx_active::1
PassthroughCluster::10.89.0.1:8081::rq_active::1
PassthroughCluster::10.89.0.1:8081::rq_total::3
inbound|8080||::observability_name::inbound|8080||
inbound|8080||::127.0.0.1:8080::rq_active::0
inbound|8090||::observability_name::inbound|8090||
inbound|8090||::127.0.0.1:8090::cx_active::1
inbound|8090||::127.0.0.1:8090::rq_active::2
agent::127.0.0.1:15020::rq_active::1
";

    fn parse_in_pieces(page: &[u8], piece: usize) -> Reading {
        let mut parser = Parser::new(rules());
        for chunk in page.chunks(piece) {
            parser.feed(chunk);
        }
        parser.finish().unwrap()
    }

    #[test]
    fn active_requests_by_cluster_and_flow() {
        let reading = parse_in_pieces(PAGE.as_bytes(), PAGE.len());
        assert_eq!(
            reading.active,
            [
                Active {
                    cluster: "PassthroughCluster".into(),
                    flow: Flow::Outbound,
                    requests: 1
                },
                Active {
                    cluster: "inbound|8090||".into(),
                    flow: Flow::Inbound,
                    requests: 2
                },
            ]
        );
        // xds-grpc's stream and the agent's call (a proxy port on the loopback) are the proxy's.
        assert_eq!(reading.total(Flow::Inbound), 2);
        assert_eq!(reading.total(Flow::Outbound), 1);
        assert_eq!(reading.clusters, 5);
        assert_eq!(reading.bytes, PAGE.len() as u64);
    }

    #[test]
    fn chunk_boundaries_anywhere_give_the_same_reading() {
        let whole = parse_in_pieces(PAGE.as_bytes(), PAGE.len());
        for piece in [1, 2, 3, 7, 13, 64] {
            assert_eq!(
                parse_in_pieces(PAGE.as_bytes(), piece),
                whole,
                "piece {piece}"
            );
        }
        // No final newline.
        let trimmed = PAGE.trim_end().as_bytes();
        assert_eq!(parse_in_pieces(trimmed, 5).total(Flow::Outbound), 1);
    }

    #[test]
    fn a_plain_envoy_fronting_an_app_on_the_loopback_is_inbound() {
        let rules = rules();
        assert_eq!(rules.flow("local_app", "127.0.0.1:8080"), Flow::Inbound);
        assert_eq!(rules.flow("local_app", "[::1]:8080"), Flow::Inbound);
        assert_eq!(rules.flow("stats", "127.0.0.1:15090"), Flow::Proxy);
        assert_eq!(rules.flow("backend", "10.0.0.7:443"), Flow::Proxy);
        assert_eq!(
            rules.flow("InboundPassthroughClusterIpv4", "10.0.0.7:9000"),
            Flow::Inbound
        );
        assert_eq!(
            rules.flow("outbound|443||api.example.com", "10.0.0.7:443"),
            Flow::Outbound
        );
        // In Istio a local service under another name is not the app.
        let istio = ClusterRules {
            names_only: true,
            ..rules
        };
        assert_eq!(istio.flow("ext-authz", "127.0.0.1:9191"), Flow::Proxy);
        assert_eq!(
            istio.flow("inbound|8080||", "127.0.0.1:8080"),
            Flow::Inbound
        );
    }

    #[test]
    fn many_busy_clusters_are_bounded_and_still_counted() {
        let mut page = String::new();
        for i in 0..(NAMED + 5) {
            page.push_str(&format!(
                "outbound|80||svc-{i}.ns.svc.cluster.local::10.0.{}.{}:80::rq_active::2\n",
                i / 200,
                i % 200
            ));
        }
        page.push_str("inbound|8080||::127.0.0.1:8080::rq_active::1\n");
        let reading = parse_in_pieces(page.as_bytes(), 100);
        assert_eq!(reading.active.len(), NAMED);
        assert_eq!(reading.unnamed, (1, 10));
        assert_eq!(reading.total(Flow::Outbound), 2 * (NAMED as u32 + 5));
        assert_eq!(reading.total(Flow::Inbound), 1);
    }

    /// Guards the parser's edges, each found by a mutant the other tests let through: the host
    /// cut from the line (a plain Envoy's flow depends on it), a last line without a newline, a
    /// long cluster name with short lines, a cluster's first line however short, and a line of
    /// exactly `LINE_MAX` bytes.
    #[test]
    fn hosts_names_and_line_lengths_at_their_edges() {
        // No final newline, and the flow decided by the host (the app on the loopback).
        let plain =
            b"local_app::observability_name::local_app\nlocal_app::127.0.0.1:8080::rq_active::2";
        let reading = parse_in_pieces(plain, 7);
        assert_eq!(reading.total(Flow::Inbound), 2, "{reading:?}");

        let name = "a_cluster_name_longer_than_its_own_lines";
        let page = format!("{name}::h::cx_active::1\n{name}::h::rq_total::3\n{name}::h::x::1\n");
        assert_eq!(parse_in_pieces(page.as_bytes(), 5).clusters, 1);

        let short = parse_in_pieces(b"abc::x\n", 3);
        assert_eq!(short.clusters, 1);
        // A name and nothing after it says nothing about a cluster.
        let mut parser = Parser::new(rules());
        parser.feed(b"abc::\n");
        assert_eq!(parser.finish(), Err(NotClusters::Unrecognised));

        let mut line = "inbound|8080||".to_string();
        let tail = "::127.0.0.1:8080::rq_active::4";
        line.push_str(&"x".repeat(LINE_MAX - line.len() - tail.len()));
        line.push_str(tail);
        assert_eq!(line.len(), LINE_MAX);
        let mut parser = Parser::new(rules());
        parser.feed(line.as_bytes());
        parser.feed(b"\n");
        assert_eq!(parser.finish().unwrap().total(Flow::Inbound), 4);
    }

    #[test]
    fn garbage_and_long_lines_are_neither_kept_nor_fatal() {
        let mut parser = Parser::new(rules());
        parser.feed(b"<html><body>not found</body></html>\n");
        assert_eq!(parser.finish(), Err(NotClusters::Unrecognised));
        // An endless line is skipped in constant memory, and the lines after it still count.
        let mut parser = Parser::new(rules());
        for _ in 0..1000 {
            parser.feed(&[b'x'; 4096]);
            assert!(parser.partial.len() <= LINE_MAX);
        }
        parser.feed(b"\ninbound|8080||::127.0.0.1:8080::rq_active::3\n");
        assert_eq!(parser.finish().unwrap().total(Flow::Inbound), 3);
        // Non-numbers and zeros are not requests.
        let mut parser = Parser::new(rules());
        parser.feed(b"inbound|8080||::127.0.0.1:8080::rq_active::lots\n");
        parser.feed(b"inbound|8081||::127.0.0.1:8081::rq_active::0\n");
        assert!(parser.finish().unwrap().active.is_empty());
    }
}

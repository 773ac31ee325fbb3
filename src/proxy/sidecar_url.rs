//! A sidecar endpoint's URL (readiness, Envoy's admin, quit): plain http, reachable without DNS.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hyper::Uri;

/// Where to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// `localhost`: tried as 127.0.0.1, then ::1, never looked up. The binary is static and runs
    /// in scratch images, where there may be no /etc/hosts and no resolver worth waiting for, and
    /// sidecars differ in which loopback they bind.
    Localhost,
    Ip(IpAddr),
    /// Any other name is resolved at each probe (the resolver may come up later than we do).
    Name(String),
}

/// A validated URL of a sidecar endpoint: readiness, Envoy's admin, or quit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SidecarUrl {
    pub host: Host,
    pub port: u16,
    /// Path and query, as given.
    pub path: String,
    /// The `Host` header value, as given.
    pub authority: String,
    text: String,
}

impl SidecarUrl {
    /// The fixed addresses to try in order, or `None` when the host is a name to resolve.
    pub fn fixed_addrs(&self) -> Option<Vec<SocketAddr>> {
        match &self.host {
            Host::Localhost => Some(vec![
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.port),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), self.port),
            ]),
            Host::Ip(ip) => Some(vec![SocketAddr::new(*ip, self.port)]),
            Host::Name(_) => None,
        }
    }
}

impl fmt::Display for SidecarUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for SidecarUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<SidecarUrl, String> {
        let bad = |why: &str| why.to_string();
        let uri: Uri = text.parse().map_err(|e| {
            bad(&format!(
                "not a URL ({e}); write it as http://HOST:PORT/PATH, e.g. \
                 http://localhost:15020/healthz/ready"
            ))
        })?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "https is not supported: the sidecar's local endpoints (status, admin, quit) \
                     answer plain http on localhost; write http://",
                ));
            }
            Some(other) => {
                return Err(bad(&format!(
                    "scheme '{other}' is not supported; use http://"
                )));
            }
            None => {
                return Err(bad(
                    "it needs a scheme and host: http://HOST:PORT/PATH, e.g. \
                     http://localhost:15020/healthz/ready",
                ));
            }
        }
        let authority = uri.authority().ok_or_else(|| bad("it has no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let raw_host = authority.host();
        if raw_host.is_empty() {
            return Err(bad("it has no host"));
        }
        // Parsed from the text: http::Uri accepts any digits after the colon, and its port_u16()
        // answers None for 99999 exactly as for "no port".
        let port = match authority
            .as_str()
            .rsplit_once(':')
            .filter(|(_, p)| !p.contains(']'))
        {
            None | Some((_, "")) => 80,
            Some((_, digits)) if !digits.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(bad(&format!("port '{digits}' is not a number")));
            }
            Some((_, digits)) => digits
                .parse::<u16>()
                .map_err(|_| bad(&format!("port {digits} is out of range")))?,
        };
        if port == 0 {
            return Err(bad("port 0 cannot be connected to"));
        }
        let host = if raw_host.eq_ignore_ascii_case("localhost") {
            Host::Localhost
        } else if let Some(inside) = raw_host.strip_prefix('[') {
            let literal = inside.trim_end_matches(']');
            if literal.contains('%') {
                return Err(bad(
                    "IPv6 zone identifiers are not supported; use http://[::1]:PORT or localhost",
                ));
            }
            match literal.parse::<Ipv6Addr>() {
                Ok(ip) => Host::Ip(IpAddr::V6(ip)),
                Err(_) => return Err(bad(&format!("[{literal}] is not an IPv6 address"))),
            }
        } else if let Ok(ip) = raw_host.parse::<IpAddr>() {
            Host::Ip(ip)
        } else {
            Host::Name(raw_host.to_ascii_lowercase())
        };
        // `http://host?x=1` has a query but no path; a request line needs one.
        let path = match uri.path_and_query().map_or("", |p| p.as_str()) {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok(SidecarUrl {
            host,
            port,
            path,
            authority: authority.as_str().to_string(),
            text: text.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_preset() {
        let url: SidecarUrl = "http://localhost:15020/healthz/ready".parse().unwrap();
        assert_eq!(url.host, Host::Localhost);
        assert_eq!(url.port, 15020);
        assert_eq!(url.path, "/healthz/ready");
        assert_eq!(url.authority, "localhost:15020");
        let addrs = url.fixed_addrs().unwrap();
        assert_eq!(addrs[0].to_string(), "127.0.0.1:15020");
        assert_eq!(addrs[1].to_string(), "[::1]:15020");
    }

    #[test]
    fn literals_names_default_port_and_query() {
        let v6: SidecarUrl = "http://[::1]:4191/ready".parse().unwrap();
        assert_eq!(v6.host, Host::Ip("::1".parse().unwrap()));
        let v4: SidecarUrl = "http://127.0.0.6:15000/ready?x=1".parse().unwrap();
        assert_eq!(v4.host, Host::Ip("127.0.0.6".parse().unwrap()));
        assert_eq!(v4.path, "/ready?x=1");
        let named: SidecarUrl = "http://Proxy.Local".parse().unwrap();
        assert_eq!(named.host, Host::Name("proxy.local".into()));
        assert_eq!(named.port, 80);
        assert_eq!(named.path, "/");
        assert!(named.fixed_addrs().is_none());
        let upper: SidecarUrl = "http://LOCALHOST:1/".parse().unwrap();
        assert_eq!(upper.host, Host::Localhost);
        let query_only: SidecarUrl = "http://localhost:18080?x=1".parse().unwrap();
        assert_eq!(query_only.path, "/?x=1");
        assert_eq!(query_only.port, 18080);
    }

    #[test]
    fn rejects_with_reasons() {
        for (bad, why) in [
            (
                "https://localhost:15020/healthz/ready",
                "https is not supported",
            ),
            ("ftp://localhost/", "scheme 'ftp'"),
            ("localhost:15020/healthz/ready", "not a URL"),
            ("/healthz/ready", "needs a scheme"),
            ("http://user:pw@localhost:1/", "credentials"),
            ("http://localhost:99999/", "port 99999 is out of range"),
            ("http://localhost:0/", "port 0"),
            ("http://localhost:+80/", "port '+80' is not a number"),
            ("http://[fe80::1%25lo]:15020/", "zone identifiers"),
            ("http://[zzz]:1/", "not an IPv6 address"),
            ("http:// bad host/", "not a URL"),
            ("", "not a URL"),
        ] {
            let err = bad.parse::<SidecarUrl>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}

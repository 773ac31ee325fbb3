//! What each supported mesh looks like from inside the pod: where its sidecar says it is ready,
//! which sockets are its own, and how to ask it to quit.

use crate::sockets::port_set::PortRange;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mesh {
    /// Istio, Anthos / Cloud Service Mesh, Alibaba ASM: pilot-agent's status port 15020.
    Istio,
    /// Istio's ambient mode: no sidecar; the node's ztunnel serves the pod through listeners in
    /// its network namespace. No gate (the pod starts only once they are up), drain on.
    Ambient,
    /// Linkerd: the proxy's admin server on 4191.
    Linkerd,
    /// A bare Envoy sidecar: its admin `/ready` on 15000.
    Envoy,
    /// No proxy: run the command at once, still as a full init.
    None,
}

impl Mesh {
    /// The readiness URL the mesh's sidecar serves on localhost, if it has one.
    pub fn ready_url(self) -> Option<&'static str> {
        match self {
            Mesh::Istio => Some("http://localhost:15020/healthz/ready"),
            Mesh::Linkerd => Some("http://localhost:4191/ready"),
            Mesh::Envoy => Some("http://localhost:15000/ready"),
            // istio-cni holds the pod's start until ztunnel listens in its network namespace,
            // so by the time the app starts its traffic is already served.
            Mesh::Ambient | Mesh::None => None,
        }
    }

    /// The URL that makes the sidecar exit, for Jobs whose app has finished.
    pub fn quit_url(self) -> Option<&'static str> {
        match self {
            // pilot-agent answers, then stops Envoy and itself.
            Mesh::Istio => Some("http://localhost:15020/quitquitquit"),
            // Off by default since Linkerd 2.16 (404); see `quit_proxy` for the hint.
            Mesh::Linkerd => Some("http://localhost:4191/shutdown"),
            Mesh::Envoy => Some("http://localhost:15000/quitquitquit"),
            // ztunnel serves the whole node: nothing in the pod to quit.
            Mesh::Ambient | Mesh::None => None,
        }
    }

    /// Envoy's admin interface, read only to explain why the proxy is not ready. Istio binds it
    /// to 127.0.0.1:15000 inside the pod; Linkerd's proxy is not Envoy.
    pub fn admin_url(self) -> Option<&'static str> {
        match self {
            Mesh::Istio | Mesh::Envoy => Some("http://localhost:15000"),
            Mesh::Ambient | Mesh::Linkerd | Mesh::None => None,
        }
    }

    /// The ports an injected, started sidecar listens on, and what each is for: the ones whose
    /// absence says something (`meshwait doctor`).
    pub fn listener_ports(self) -> &'static [(u16, &'static str)] {
        match self {
            Mesh::Istio => &[
                (15020, "status"),
                (15000, "Envoy admin"),
                (15001, "outbound capture"),
                (15006, "inbound capture"),
            ],
            Mesh::Ambient => &[
                (15001, "ztunnel outbound"),
                (15006, "ztunnel inbound, plaintext"),
                (15008, "ztunnel inbound, HBONE"),
            ],
            Mesh::Linkerd => &[(4191, "admin"), (4140, "outbound"), (4143, "inbound")],
            Mesh::Envoy => &[(15000, "Envoy admin")],
            Mesh::None => &[],
        }
    }

    /// The proxy's traffic-capture listeners. Envoy starts listening on them in the same step
    /// that makes it ready (its listeners go live when initialisation completes), so their
    /// appearance is the moment worth probing at. Linkerd's proxy listens on its own.
    pub fn capture_ports(self) -> &'static [u16] {
        match self {
            Mesh::Istio => &[15001, 15006],
            Mesh::Linkerd => &[4140, 4143],
            Mesh::Ambient | Mesh::Envoy | Mesh::None => &[],
        }
    }

    /// The UIDs the sidecar runs as: istio-init and linkerd-init exempt exactly these from
    /// redirection, so every injected proxy uses them.
    pub fn proxy_uids(self) -> &'static [u32] {
        match self {
            Mesh::Istio | Mesh::Envoy => &[1337],
            Mesh::Linkerd => &[2102],
            // ztunnel's sockets in the pod belong to root (UID 0), which the app may be too:
            // they are told apart by port instead.
            Mesh::Ambient | Mesh::None => &[],
        }
    }

    /// Ports the sidecar listens on. Istio keeps all of its own (admin 15000, capture 15001 and
    /// 15006, status 15020, health 15021, DNS 15053, metrics 15090, ...) inside 15000-15090;
    /// Linkerd uses outbound 4140, inbound 4143, control 4190 and admin 4191.
    pub fn proxy_ports(self) -> &'static [PortRange] {
        const ISTIO: &[PortRange] = &[PortRange::new(15000, 15090)];
        // ztunnel's in-pod listeners: outbound capture, inbound plaintext and HBONE, DNS.
        const AMBIENT: &[PortRange] = &[
            PortRange::new(15001, 15001),
            PortRange::new(15006, 15006),
            PortRange::new(15008, 15008),
            PortRange::new(15053, 15053),
        ];
        const LINKERD: &[PortRange] = &[
            PortRange::new(4140, 4140),
            PortRange::new(4143, 4143),
            PortRange::new(4190, 4191),
        ];
        match self {
            Mesh::Istio | Mesh::Envoy => ISTIO,
            Mesh::Ambient => AMBIENT,
            Mesh::Linkerd => LINKERD,
            Mesh::None => &[],
        }
    }

    /// Ports the proxy connects to on other hosts, whatever the address: ztunnel carries the
    /// pod's traffic to its peers in HBONE tunnels to their port 15008, pooled and long-lived;
    /// the app's own requests in them are seen on the app's own sockets.
    pub fn peer_ports(self) -> &'static [PortRange] {
        const HBONE: &[PortRange] = &[PortRange::new(15008, 15008)];
        match self {
            Mesh::Ambient => HBONE,
            _ => &[],
        }
    }

    /// The longest drain, when `--drain-timeout` is not given. Without a sidecar nothing cuts
    /// the app's requests at shutdown, so meshwait is a plain init and draining is asked for,
    /// not assumed.
    pub fn drain_timeout(self) -> std::time::Duration {
        match self {
            Mesh::None => std::time::Duration::ZERO,
            _ => std::time::Duration::from_secs(20),
        }
    }

    /// How long a stop signal is held before the drain, when `--shutdown-delay` is not given.
    /// In ambient mode a peer's ztunnel keeps sending new connections to the pod until the
    /// endpoint's removal reaches it, and with no sidecar in the pod nothing accepts them once
    /// the app has closed its listener: they fail (503s just after a rollout). Five seconds is
    /// what Istio's sidecar drain gives the same propagation.
    pub fn shutdown_delay(self) -> std::time::Duration {
        match self {
            Mesh::Ambient => std::time::Duration::from_secs(5),
            _ => std::time::Duration::ZERO,
        }
    }

    /// Whether the listening ports seen in the pod are ztunnel's in-pod listeners without a
    /// sidecar's status port: a pod in ambient mode.
    pub fn ambient_listeners(listening: impl Fn(u16) -> bool) -> bool {
        Mesh::Ambient
            .listener_ports()
            .iter()
            .all(|&(port, _)| listening(port))
            && !listening(15020)
    }

    /// The lower-case name users type.
    pub fn name(self) -> &'static str {
        match self {
            Mesh::Istio => "istio",
            Mesh::Linkerd => "linkerd",
            Mesh::Envoy => "envoy",
            Mesh::Ambient => "ambient",
            Mesh::None => "none",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Mesh;
    use crate::proxy::sidecar_url::SidecarUrl;

    #[test]
    fn every_preset_url_parses() {
        for mesh in [Mesh::Istio, Mesh::Linkerd, Mesh::Envoy] {
            let urls = [mesh.ready_url(), mesh.quit_url(), mesh.admin_url()];
            for url in urls.into_iter().flatten() {
                assert!(url.parse::<SidecarUrl>().is_ok(), "{url}");
            }
            assert!(!mesh.proxy_uids().is_empty());
            assert!(!mesh.proxy_ports().is_empty());
        }
        assert_eq!(Mesh::None.ready_url(), None);
        assert_eq!(Mesh::None.quit_url(), None);
    }

    #[test]
    fn an_ambient_pod_is_ztunnels_three_listeners_without_a_status_port() {
        let pod = |ports: &'static [u16]| Mesh::ambient_listeners(|p| ports.contains(&p));
        assert!(pod(&[15001, 15006, 15008]));
        assert!(pod(&[15001, 15006, 15008, 15053, 8080]));
        // A sidecar: Istio's own 15001 and 15006, and its status port.
        assert!(!pod(&[15000, 15001, 15006, 15020, 15021, 15090]));
        // A sidecar with HBONE (15008) in an ambient-enabled mesh still has its status port.
        assert!(!pod(&[15001, 15006, 15008, 15020]));
        for missing in [15001, 15006, 15008] {
            let ports: Vec<u16> = [15001, 15006, 15008]
                .into_iter()
                .filter(|&p| p != missing)
                .collect();
            assert!(
                !Mesh::ambient_listeners(|p| ports.contains(&p)),
                "{missing}"
            );
        }
    }
}

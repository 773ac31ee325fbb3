//! What each supported mesh looks like from inside the pod.

use clap::ValueEnum;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mesh {
    /// Istio, Anthos / Cloud Service Mesh, Alibaba ASM: pilot-agent's status port 15020.
    Istio,
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
            Mesh::None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Mesh;
    use crate::ready_url::ReadyUrl;

    #[test]
    fn every_preset_url_parses() {
        for mesh in [Mesh::Istio, Mesh::Linkerd, Mesh::Envoy] {
            let url = mesh.ready_url().unwrap();
            assert!(url.parse::<ReadyUrl>().is_ok(), "{url}");
        }
        assert_eq!(Mesh::None.ready_url(), None);
    }
}

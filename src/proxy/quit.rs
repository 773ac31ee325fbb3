//! After the app exits: ask the sidecar (and any other helper, such as a Cloud SQL proxy) to
//! exit too, so a Job's pod can complete. Sidecars otherwise run forever and hold the Job open.

use std::time::Duration;

use hyper::Method;

use crate::proxy::sidecar_http::{self, Outcome};
use crate::proxy::sidecar_url::SidecarUrl;

/// The `component` of this module's log lines. Users filter logs by it, so it is fixed here,
/// not taken from the module path, which moves when the code is reorganised.
const LOG: &str = "quit_proxy";

/// When to quit the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuitOn {
    /// Only when the app exited 0: under `restartPolicy: OnFailure` the app is restarted in the
    /// same pod and needs its proxy.
    Success,
    /// Whatever the app's status.
    Always,
}

#[derive(Clone, Debug)]
pub struct QuitPlan {
    /// Empty: quitting is off.
    pub urls: Vec<SidecarUrl>,
    pub on: QuitOn,
    pub timeout: Duration,
}

impl QuitPlan {
    pub fn wanted(&self, exit_code: i32) -> bool {
        !self.urls.is_empty() && (self.on == QuitOn::Always || exit_code == 0)
    }
}

/// POSTs each URL once; failures are logged, never retried (a second POST could stop a proxy that
/// a restarted container already depends on) and never change the exit status.
pub async fn quit(plan: &QuitPlan) {
    for url in &plan.urls {
        let outcome = sidecar_http::call(url, Method::POST, plan.timeout).await;
        match outcome {
            Outcome::Ready { status } => {
                tracing::info!(target: LOG, url = %url, status, "asked the proxy to quit");
            }
            Outcome::REFUSED => {
                tracing::info!(target: LOG, url = %url, "nothing listens there: already gone");
            }
            Outcome::NotReady { status: 404, .. } if url.path.ends_with("/shutdown") => {
                tracing::error!(target: LOG,
                    url = %url,
                    "the proxy refused to shut down (HTTP 404): Linkerd's shutdown endpoint is off \
                     by default since 2.16; enable it with the pod annotation \
                     `config.linkerd.io/proxy-admin-shutdown: enabled`"
                );
            }
            other => {
                tracing::error!(target: LOG, url = %url, "asking the proxy to quit failed: {other}");
            }
        }
    }
}

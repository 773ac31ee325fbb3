//! `meshwait ready`: one probe of the proxy (or, with `--wait`, the gate alone), for probes and
//! scripts.

use std::io::Write;

use tokio::runtime::Runtime;

use crate::commands::run::gate_outcome;
use crate::exit_code;
use crate::proxy::diagnosis::{self, Explained, Facts};
use crate::proxy::gate::{GatePlan, OnTimeout};
use crate::proxy::sidecar_http;
use crate::run::incoming_signals::Signals;

/// The `component` of this module's log lines. Users filter logs by it, so it is fixed here,
/// not taken from the module path, which moves when the code is reorganised.
const LOG: &str = "lifecycle";

/// 0 when the proxy is ready, 1 when not, 69 when `--wait` timed out, 128+N on a stop signal.
pub fn ready(gate: &GatePlan, wait: bool, runtime: &Runtime, signals: &mut Signals) -> i32 {
    if !wait {
        return runtime.block_on(probe_once(gate, signals));
    }
    // A probe answers for the proxy only: `--on-timeout start` (often set for the whole
    // container through the environment) must not turn "never ready" into success here.
    match runtime.block_on(gate_outcome(gate, OnTimeout::Fail, signals)) {
        Ok(()) => exit_code::OK,
        Err(code) => code,
    }
}

/// `meshwait ready`: one probe, the answer on stdout, 0 or 1.
async fn probe_once(gate: &GatePlan, signals: &mut Signals) -> i32 {
    let probe = sidecar_http::probe(&gate.url, gate.request_timeout);
    let outcome = match signals.unless_stopped(probe, &mut |_| {}).await {
        Ok(outcome) => outcome,
        Err(stop) => return exit_code::for_signal(stop.signal.raw()),
    };
    // The answer is the exit code; the line is for people, so a closed stdout is no error.
    let verdict = if outcome.is_ready() {
        "ready"
    } else {
        "not ready"
    };
    let _ = writeln!(std::io::stdout(), "{verdict}: {} ({outcome})", gate.url);
    if outcome.is_ready() {
        return exit_code::OK;
    }
    // One look is all a probe gets, so the likely cause is named at once (on stderr: stdout
    // stays one line for scripts).
    let facts = Facts::gather(outcome, gate.admin.as_ref(), gate.request_timeout).await;
    if let Some(hint) = diagnosis::diagnose(gate.mesh, &facts) {
        tracing::warn!(target: LOG, hint = hint.id, url = %gate.url, "{}", Explained { hint, facts: &facts });
    }
    exit_code::NOT_READY
}

//! Run mode, `meshwait [OPTIONS] [--] COMMAND`: the gate, the app supervised as PID 1, the
//! leftovers, and the proxy asked to quit.

use tokio::runtime::Runtime;

use crate::commands::plan::RunPlan;
use crate::exit_code;
use crate::proxy::gate::{self, GateEnd, GatePlan, OnTimeout};
use crate::proxy::quit;
use crate::run::incoming_signals::{Inherited, Signals};
use crate::run::job_control;
use crate::run::launch;
use crate::run::leftovers;
use crate::run::reaper;
use crate::run::supervise;

/// The `component` of this module's log lines. Users filter logs by it, so it is fixed here,
/// not taken from the module path, which moves when the code is reorganised.
const LOG: &str = "lifecycle";

/// Runs the app and returns its exit status (or meshwait's own, when it never started).
pub fn run(run: RunPlan, inherited: Inherited, runtime: &Runtime, signals: &mut Signals) -> i32 {
    let quit = run.quit.clone();
    let code = run_app(run, inherited, runtime, signals);
    if quit.wanted(code) {
        runtime.block_on(quit::quit(&quit));
    } else if !quit.urls.is_empty() {
        tracing::info!(target: LOG,
            exit_code = code,
            "leaving the proxy running: the exit code is not 0 (the app failed, or never \
             started) and --quit-on is success"
        );
    }
    code
}

/// Runs the gate; `Err` carries the exit code when meshwait must stop here.
pub async fn gate_outcome(
    gate: &GatePlan,
    on_timeout: OnTimeout,
    signals: &mut Signals,
) -> Result<(), i32> {
    match gate::wait_until_ready(gate, signals).await {
        GateEnd::Ready => Ok(()),
        GateEnd::Stopped(signal) => Err(exit_code::for_signal(signal.raw())),
        GateEnd::TimedOut {
            probes,
            waited,
            last,
        } => {
            let (why, hint) = gate::describe_timeout(gate, probes, waited, last.as_ref());
            let hint = hint.unwrap_or("none");
            match on_timeout {
                OnTimeout::Fail => {
                    tracing::error!(target: LOG, exit_code = exit_code::PROXY_UNAVAILABLE, hint, "{why}");
                    Err(exit_code::PROXY_UNAVAILABLE)
                }
                OnTimeout::Start => {
                    tracing::warn!(target: LOG, hint, "{why}; continuing because --on-timeout start");
                    Ok(())
                }
            }
        }
    }
}

/// The run path. The gate and the clean-up wait on timers and sockets as well as signals, so they
/// run on the event loop; supervision waits for signals alone and blocks (see `supervise`).
fn run_app(run: RunPlan, inherited: Inherited, runtime: &Runtime, signals: &mut Signals) -> i32 {
    if let Err(e) = reaper::become_subreaper() {
        tracing::warn!(target: LOG, error = %e, "cannot become a child subreaper; orphans will not be reaped here");
    }
    if let Some(gate) = &run.gate {
        if let Err(code) = runtime.block_on(gate_outcome(gate, gate.on_timeout, signals)) {
            return code;
        }
    }
    let app = match launch::launch(&run.app, inherited) {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(target: LOG, exit_code = e.code, "{}", e.message);
            return e.code;
        }
    };
    tracing::info!(target: LOG,
        pid = app.pid.as_raw(),
        "started {}",
        run.app.program.to_string_lossy()
    );
    let ended = supervise::supervise(app, &run.app, signals, runtime);
    job_control::reclaim_terminal(app);
    tracing::info!(target: LOG,
        pid = app.pid.as_raw(),
        exit_code = ended.exit_code(),
        "app {ended}"
    );
    runtime.block_on(leftovers::cleanup(app, run.app.cleanup_grace, signals));
    ended.exit_code()
}

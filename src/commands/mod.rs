//! The one-way flow: command line → plan → gate → supervise → shutdown.

pub mod argv;
pub mod cli;
mod conns;
mod doctor;
mod install;
pub mod logging;
pub mod plan;
mod usage;

use std::ffi::OsString;
use std::io::Write;

use tokio::runtime::Runtime;

use std::time::{Duration, Instant};

use crate::commands::cli::LogFormat;
use crate::commands::plan::{Plan, RunPlan};
use crate::exit_code;
use crate::proxy::diagnosis::{self, Explained, Facts};
use crate::proxy::gate::{self, GateEnd, GatePlan, OnTimeout};
use crate::proxy::quit;
use crate::proxy::sidecar_http;
use crate::proxy::sidecar_view;
use crate::run::drain::{Drainer, Poll, SocketPlan, Until};
use crate::run::incoming_signals::{self, Inherited, Received, Signals};
use crate::run::job_control;
use crate::run::kernel_signals::Mask;
use crate::run::launch;
use crate::run::leftovers;
use crate::run::reaper;
use crate::run::supervise;

/// The `component` of this module's log lines. Users filter logs by it, so it is fixed here,
/// not taken from the module path, which moves when the code is reorganised.
const LOG: &str = "lifecycle";

/// Runs meshwait with `args` (argv, program name first) and returns the exit status.
pub fn main(args: Vec<OsString>, inherited: Inherited) -> i32 {
    forget_empty_settings();
    let json = usage::wants_json(&args);
    let (cli, unknown) = match usage::parse(args) {
        Ok(parsed) => (parsed.cli, parsed.unknown),
        Err(refusal) => {
            usage::say(&refusal, json);
            return refusal.code;
        }
    };
    let json = cli.log.log_format == LogFormat::Json;
    logging::init(&cli.log);
    for name in unknown {
        tracing::warn!(target: LOG,
            variable = %name,
            "{name} is no meshwait setting (a typo? `meshwait --help` lists each option's \
             variable); ignored"
        );
    }
    let plan = match Plan::from_cli(cli) {
        Ok(plan) => plan,
        Err(message) => {
            let refusal = usage::Refusal {
                code: exit_code::USAGE,
                text: format!("error: {message}\n\nFor more information, try '--help'.\n"),
                to_stdout: false,
            };
            usage::say(&refusal, json);
            return refusal.code;
        }
    };
    // One thread: no worker may ever run with signals unblocked, forks stay simple, and an idle
    // current-thread runtime sleeps in epoll_wait with no timer. At most one blocking thread (name
    // lookups for a URL's host name, one per name at a time): a lookup stuck on a dead resolver
    // then delays the others instead of piling up threads.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .on_thread_start(incoming_signals::block_in_new_thread)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            say_error(&format!("cannot start the event loop: {e}"));
            return exit_code::OS_ERROR;
        }
    };
    let code = execute(plan, inherited, &runtime);
    // Do not wait for a name lookup still running on the blocking thread: exit now.
    runtime.shutdown_background();
    code
}

fn execute(plan: Plan, inherited: Inherited, runtime: &Runtime) -> i32 {
    // Signals::open registers with the runtime's reactor, so it needs the runtime entered.
    let _context = runtime.enter();
    let mut signals = match Signals::open(&Mask::everything(), &inherited) {
        Ok(signals) => signals,
        Err(e) => {
            tracing::error!(target: LOG, error = %e, "cannot open a signalfd");
            return exit_code::OS_ERROR;
        }
    };
    match plan {
        Plan::Ready { gate, wait: false } => runtime.block_on(probe_once(&gate, &mut signals)),
        // A probe answers for the proxy only: `--on-timeout start` (often set for the whole
        // container through the environment) must not turn "never ready" into success here.
        Plan::Ready { gate, wait: true } => {
            match runtime.block_on(gate_outcome(&gate, OnTimeout::Fail, &mut signals)) {
                Ok(()) => exit_code::OK,
                Err(code) => code,
            }
        }
        Plan::Run(run) => {
            let quit = run.quit.clone();
            let code = run_app(*run, inherited, runtime, &mut signals);
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
        Plan::Drain {
            sockets,
            until,
            timeout,
        } => drain_until(sockets, until, timeout, &mut signals, runtime),
        Plan::Doctor(plan) => runtime.block_on(doctor::examine(&plan, &mut signals)),
        Plan::Install { dir } => match install::install(&dir) {
            Ok(path) => {
                tracing::info!(target: LOG, path = %path.display(), "installed");
                let _ = writeln!(std::io::stdout(), "{}", path.display());
                exit_code::OK
            }
            Err(e) => {
                tracing::error!(target: LOG, "{e}");
                exit_code::CANNOT_CREATE
            }
        },
        Plan::Conns { sockets, json } => {
            // The sidecar first: its read is bounded, and the table then streams out unbroken.
            let sidecar = sockets
                .sidecar
                .as_ref()
                .map(|plan| runtime.block_on(sidecar_view::look(plan, true)));
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(32 * 1024, stdout.lock());
            match conns::list(&sockets, sidecar.as_ref(), json, &mut out) {
                Ok(()) => exit_code::OK,
                Err(e) => {
                    tracing::error!(target: LOG, error = %e, "cannot read the sockets");
                    exit_code::OS_ERROR
                }
            }
        }
    }
}

/// `meshwait drain`: polls until drained (0), the timeout (1), or a stop signal (128+N).
fn drain_until(
    sockets: SocketPlan,
    until: Until,
    timeout: Duration,
    signals: &mut Signals,
    runtime: &Runtime,
) -> i32 {
    let started = Instant::now();
    let mut drainer = Drainer::new(sockets, until, timeout);
    loop {
        match drainer.poll() {
            Poll::Drained => {
                let waited = started.elapsed();
                tracing::info!(target: LOG,
                    waited_ms = waited.as_millis() as u64,
                    "drained: {}",
                    drainer.last()
                );
                let _ = writeln!(
                    std::io::stdout(),
                    "drained after {}",
                    humantime::format_duration(round_ms(waited))
                );
                return exit_code::OK;
            }
            Poll::TimedOut(census) => {
                tracing::warn!(target: LOG,
                    blocking = census.blocking,
                    held_by = census.held_by(),
                    "drain timeout: still blocking: {census}"
                );
                let _ = writeln!(
                    std::io::stdout(),
                    "not drained after {}: {census}",
                    humantime::format_duration(round_ms(started.elapsed()))
                );
                return exit_code::STILL_BUSY;
            }
            // Any other signal leaves the schedule alone: a rescan per signal would let a
            // flood of them (a chatty SIGUSR1, SIGWINCH from a resized terminal) turn the drain
            // into a busy loop of socket scans.
            Poll::Busy(at) => {
                let pause = drainer.pause(at);
                let ignore = |received: std::io::Result<Received>| match received {
                    Ok(r) => {
                        tracing::debug!(target: LOG, signal = %r.signal, "ignored while draining")
                    }
                    Err(e) => {
                        tracing::error!(target: LOG, error = %e, "waiting for signals failed")
                    }
                };
                if let Err(stop) = runtime.block_on(signals.unless_stopped(pause, ignore)) {
                    return exit_code::for_signal(stop.signal.raw());
                }
            }
        }
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// Writes a usage or start-up error. Never panics: a closed stderr must not turn into an abort.
fn say_error(message: &str) {
    let _ = writeln!(std::io::stderr(), "error: {message}");
}

/// Treats `MESHWAIT_X=""` as unset: templated manifests (`value: {{ .Values.x | quote }}`) write
/// empty strings when they mean "use the default".
fn forget_empty_settings() {
    let empty: Vec<OsString> = std::env::vars_os()
        .filter(|(key, value)| key.to_string_lossy().starts_with("MESHWAIT_") && value.is_empty())
        .map(|(key, _)| key)
        .collect();
    for key in empty {
        // SAFETY: called before the runtime starts, while meshwait has exactly one thread.
        unsafe { std::env::remove_var(key) };
    }
}

/// `meshwait ready`: one probe, the answer on stdout, 0 or 1.
async fn probe_once(gate: &GatePlan, signals: &mut Signals) -> i32 {
    let probe = sidecar_http::probe(&gate.url, gate.request_timeout);
    let outcome = match signals.unless_stopped(probe, |_| {}).await {
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

/// Runs the gate; `Err` carries the exit code when meshwait must stop here.
async fn gate_outcome(
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
    let app = match launch::launch(&run, inherited) {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(target: LOG, exit_code = e.code, "{}", e.message);
            return e.code;
        }
    };
    tracing::info!(target: LOG,
        pid = app.pid.as_raw(),
        "started {}",
        run.program.to_string_lossy()
    );
    let ended = supervise::supervise(app, &run, signals, runtime);
    job_control::reclaim_terminal(app);
    tracing::info!(target: LOG,
        pid = app.pid.as_raw(),
        exit_code = ended.exit_code(),
        "app {ended}"
    );
    runtime.block_on(leftovers::cleanup(app, run.cleanup_grace, signals));
    ended.exit_code()
}

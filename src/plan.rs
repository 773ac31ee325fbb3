//! The validated plan: what the command line asked for, resolved against the mesh presets, with
//! nothing left for later stages to interpret.

use std::ffi::OsString;
use std::time::Duration;

use crate::cli::{Cli, Command, GateArgs, OnTimeout};
use crate::ready_url::ReadyUrl;
use crate::signal_name::Signal;

#[derive(Debug)]
pub enum Plan {
    Run(RunPlan),
    /// `meshwait ready`: one probe, or with `wait` a gate without a command.
    Ready {
        gate: GatePlan,
        wait: bool,
    },
}

/// How to wait for the proxy.
#[derive(Clone, Debug)]
pub struct GatePlan {
    pub url: ReadyUrl,
    /// `None` waits forever.
    pub timeout: Option<Duration>,
    pub interval: Duration,
    pub request_timeout: Duration,
    pub on_timeout: OnTimeout,
}

#[derive(Debug)]
pub struct RunPlan {
    /// `None` when there is nothing to wait for (`--no-wait`, or `--mesh none` without a URL).
    pub gate: Option<GatePlan>,
    pub program: OsString,
    pub args: Vec<OsString>,
    pub stop_signal: Signal,
    pub process_group: bool,
    pub cleanup_grace: Duration,
}

impl Plan {
    pub fn from_cli(cli: Cli) -> Result<Plan, String> {
        match cli.command {
            Command::Run(run) => {
                let mut command = run.command.into_iter();
                let program = command
                    .next()
                    .filter(|p| !p.is_empty())
                    .ok_or("missing command: meshwait [OPTIONS] [--] COMMAND [ARGS]...")?;
                let gate = if run.no_wait {
                    None
                } else {
                    GatePlan::from_args(run.gate)
                };
                Ok(Plan::Run(RunPlan {
                    gate,
                    program,
                    args: command.collect(),
                    stop_signal: run.stop_signal,
                    process_group: run.process_group,
                    cleanup_grace: run.cleanup_grace,
                }))
            }
            Command::Ready(ready) => {
                let mesh = ready.gate.mesh;
                let gate = GatePlan::from_args(ready.gate).ok_or_else(|| {
                    format!(
                        "nothing to probe: --mesh {} has no readiness URL; give --ready-url",
                        format!("{mesh:?}").to_lowercase()
                    )
                })?;
                Ok(Plan::Ready {
                    gate,
                    wait: ready.wait,
                })
            }
        }
    }
}

impl GatePlan {
    /// `None` when neither `--ready-url` nor the mesh preset names an endpoint.
    fn from_args(args: GateArgs) -> Option<GatePlan> {
        let url = match args.ready_url {
            Some(url) => url,
            None => args.mesh.ready_url()?.parse().ok()?,
        };
        Some(GatePlan {
            url,
            timeout: (!args.timeout.is_zero()).then_some(args.timeout),
            interval: args.interval,
            request_timeout: args.request_timeout,
            on_timeout: args.on_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str]) -> Result<Plan, String> {
        let cli = Cli::parse_args(args.iter().map(OsString::from).collect())
            .map_err(|e| e.to_string())?;
        Plan::from_cli(cli)
    }

    #[test]
    fn presets_and_override() {
        let Plan::Run(run) = plan(&["meshwait", "--mesh", "linkerd", "app", "x"]).unwrap() else {
            panic!()
        };
        assert_eq!(
            run.gate.unwrap().url.to_string(),
            "http://localhost:4191/ready"
        );
        assert_eq!(run.program, "app");
        assert_eq!(run.args, ["x"]);
        let Plan::Run(run) = plan(&[
            "meshwait",
            "--mesh",
            "none",
            "--ready-url",
            "http://127.0.0.1:9/r",
            "app",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(run.gate.unwrap().url.port, 9);
    }

    #[test]
    fn no_gate_when_none_or_no_wait() {
        let Plan::Run(run) = plan(&["meshwait", "--mesh", "none", "app"]).unwrap() else {
            panic!()
        };
        assert!(run.gate.is_none());
        let Plan::Run(run) = plan(&["meshwait", "--no-wait", "app"]).unwrap() else {
            panic!()
        };
        assert!(run.gate.is_none());
    }

    #[test]
    fn zero_timeout_means_forever() {
        let Plan::Run(run) = plan(&["meshwait", "--timeout", "0", "app"]).unwrap() else {
            panic!()
        };
        assert_eq!(run.gate.unwrap().timeout, None);
    }

    #[test]
    fn ready_needs_something_to_probe() {
        let err = plan(&["meshwait", "ready", "--mesh", "none"]).unwrap_err();
        assert!(err.contains("--mesh none has no readiness URL"), "{err}");
    }

    #[test]
    fn empty_program_is_rejected() {
        let err = plan(&["meshwait", "--", ""]).unwrap_err();
        assert!(err.contains("missing command"), "{err}");
    }
}

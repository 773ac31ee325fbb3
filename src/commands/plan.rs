//! The validated plan: what the command line asked for, resolved against the mesh presets, with
//! nothing left for later stages to interpret.
//!
//! Each stage declares the input it takes beside its own code (`GatePlan` with the gate,
//! `HoldPlan` with the hold, `SocketPlan` with the drain, `QuitPlan` with quitting, `AppPlan`
//! with `run/`); this file only builds them, so no stage depends on the command line.

use std::time::Duration;

use crate::commands::cli::{
    self, AdminArgs, AdminUrl, Cli, Command, EndpointArgs, GateArgs, QuitArgs, SocketArgs,
};
use crate::proxy::envoy_clusters::ClusterRules;
use crate::proxy::gate::GatePlan;
use crate::proxy::mesh::Mesh;
use crate::proxy::quit::{QuitOn, QuitPlan};
use crate::proxy::sidecar_url::SidecarUrl;
use crate::proxy::sidecar_view::SidecarPlan;
use crate::run::AppPlan;
use crate::run::drain::{SocketPlan, Until};
use crate::run::stop_hold::HoldPlan;
use crate::sockets::connection_class::ProxyRules;
use crate::sockets::port_set::PortSet;

#[derive(Debug)]
pub enum Plan {
    Run(Box<RunPlan>),
    /// `meshwait ready`: one probe, or with `wait` a gate without a command.
    Ready {
        gate: Box<GatePlan>,
        wait: bool,
    },
    /// `meshwait drain`: poll the sockets until drained or the timeout.
    Drain {
        sockets: SocketPlan,
        until: Until,
        timeout: Duration,
    },
    /// `meshwait conns`: list the sockets once.
    Conns {
        sockets: SocketPlan,
        json: bool,
    },
    /// `meshwait doctor`: one look at everything, as a check list.
    Doctor(Box<DoctorPlan>),
    /// `meshwait install`: copy the binary into a directory.
    Install {
        dir: std::path::PathBuf,
    },
}

/// What `meshwait doctor` looks at.
#[derive(Debug)]
pub struct DoctorPlan {
    pub mesh: Mesh,
    /// `None` with `--mesh none` and no `--ready-url`.
    pub ready: Option<SidecarUrl>,
    pub admin: Option<SidecarUrl>,
    pub quit: Vec<SidecarUrl>,
    pub request_timeout: Duration,
    pub sockets: SocketPlan,
    pub json: bool,
}

#[derive(Debug)]
pub struct RunPlan {
    /// `None` when there is nothing to wait for (`--no-wait`, or `--mesh none` without a URL).
    pub gate: Option<GatePlan>,
    pub app: AppPlan,
    pub quit: QuitPlan,
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
                let mesh = run.mesh.mesh;
                let quit = quit_plan(mesh, run.quit, run.gate.endpoint.admin.request_timeout)?;
                let drain_timeout = run
                    .hold
                    .drain_timeout
                    .unwrap_or_else(|| mesh.drain_timeout());
                let sockets = socket_plan(mesh, run.sockets, &run.gate.endpoint.admin)?;
                let gate = if run.no_wait {
                    None
                } else {
                    GatePlan::from_args(mesh, run.gate)?
                };
                Ok(Plan::Run(Box::new(RunPlan {
                    gate,
                    app: AppPlan {
                        program,
                        args: command.collect(),
                        not_inherited: &cli::NOT_INHERITED,
                        stop_signal: run.stop_signal,
                        process_group: run.process_group,
                        cleanup_grace: run.cleanup_grace,
                        hold: HoldPlan {
                            shutdown_delay: run
                                .hold
                                .shutdown_delay
                                .unwrap_or_else(|| mesh.shutdown_delay()),
                            drain_timeout,
                            triggers: run.hold.drain_on,
                            sockets,
                        },
                    },
                    quit,
                })))
            }
            Command::Ready(ready) => {
                let mesh = ready.mesh.mesh;
                let gate = GatePlan::from_args(mesh, ready.gate)?.ok_or_else(|| {
                    format!(
                        "nothing to probe: --mesh {} has no readiness URL; give --ready-url",
                        mesh.name()
                    )
                })?;
                Ok(Plan::Ready {
                    gate: Box::new(gate),
                    wait: ready.wait,
                })
            }
            Command::Drain(drain) => Ok(Plan::Drain {
                sockets: socket_plan(drain.mesh.mesh, drain.sockets, &drain.admin)?,
                until: drain.until,
                timeout: drain.timeout,
            }),
            Command::Conns(conns) => Ok(Plan::Conns {
                sockets: socket_plan(conns.mesh.mesh, conns.sockets, &conns.admin)?,
                json: conns.json,
            }),
            Command::Doctor(doctor) => {
                let mesh = doctor.mesh.mesh;
                let ready = match doctor.endpoint.ready_url {
                    Some(url) => Some(url),
                    None => preset(mesh.ready_url())?,
                };
                let quit = if doctor.quit_url.is_empty() {
                    preset(mesh.quit_url())?.into_iter().collect()
                } else {
                    doctor.quit_url
                };
                Ok(Plan::Doctor(Box::new(DoctorPlan {
                    mesh,
                    ready,
                    admin: admin_url(mesh, doctor.endpoint.admin.admin_url.as_ref())?,
                    quit,
                    request_timeout: doctor.endpoint.admin.request_timeout,
                    sockets: socket_plan(mesh, doctor.sockets, &doctor.endpoint.admin)?,
                    json: doctor.json,
                })))
            }
            Command::Install(install) => Ok(Plan::Install { dir: install.dir }),
        }
    }
}

fn preset(url: Option<&str>) -> Result<Option<SidecarUrl>, String> {
    url.map(str::parse).transpose()
}

/// `--admin-url`: a base URL (its path is ignored), `none`, or the mesh's.
fn admin_url(mesh: Mesh, given: Option<&AdminUrl>) -> Result<Option<SidecarUrl>, String> {
    match given {
        Some(AdminUrl::Off) => Ok(None),
        Some(AdminUrl::At(url)) => Ok(Some(url.clone())),
        None => preset(mesh.admin_url()),
    }
}

impl GatePlan {
    /// `None` when neither `--ready-url` nor the mesh preset names an endpoint.
    fn from_args(mesh: Mesh, args: GateArgs) -> Result<Option<GatePlan>, String> {
        let EndpointArgs {
            ready_url,
            admin:
                AdminArgs {
                    admin_url: admin,
                    request_timeout,
                },
        } = args.endpoint;
        let Some(url) = ready_url.map_or_else(|| preset(mesh.ready_url()), |u| Ok(Some(u)))? else {
            return Ok(None);
        };
        Ok(Some(GatePlan {
            url,
            mesh,
            admin: admin_url(mesh, admin.as_ref())?,
            timeout: (!args.timeout.is_zero()).then_some(args.timeout),
            interval: args.interval,
            request_timeout,
            hint_after: args.hint_after,
            on_timeout: args.on_timeout,
            watch_ports: if args.watch_listener.is_empty() {
                mesh.capture_ports().to_vec()
            } else {
                args.watch_listener
                    .into_iter()
                    .filter(|&p| p != 0)
                    .collect()
            },
        }))
    }
}

/// The proxy's UIDs and ports (as given, or the mesh's own), and Envoy's admin for its request
/// counts.
fn socket_plan(mesh: Mesh, args: SocketArgs, admin: &AdminArgs) -> Result<SocketPlan, String> {
    let uids = if args.proxy_uid.is_empty() {
        mesh.proxy_uids().to_vec()
    } else {
        args.proxy_uid
    };
    let ports = if args.proxy_port.is_empty() {
        PortSet::from_ranges(mesh.proxy_ports())
    } else {
        PortSet::from_ranges(&args.proxy_port)
    };
    let sidecar = admin_url(mesh, admin.admin_url.as_ref())?.map(|admin_url| SidecarPlan {
        admin: admin_url,
        bound: admin.request_timeout,
        outbound_hold: args.outbound_hold,
        rules: ClusterRules {
            proxy_ports: ports.clone(),
            names_only: mesh == Mesh::Istio,
        },
    });
    Ok(SocketPlan {
        rules: ProxyRules {
            uids,
            ports,
            peer_ports: PortSet::from_ranges(mesh.peer_ports()),
        },
        quiet: args.quiet_window,
        source: args.sockets,
        sidecar,
    })
}

/// `--quit-url` replaces the mesh's URL; `--quit-proxy` or `--quit-on` alone uses the mesh's.
fn quit_plan(mesh: Mesh, args: QuitArgs, timeout: Duration) -> Result<QuitPlan, String> {
    let urls = if !args.quit_url.is_empty() {
        args.quit_url
    } else if args.quit_proxy || args.quit_on.is_some() {
        let asked_by = if args.quit_proxy {
            "--quit-proxy"
        } else {
            "--quit-on"
        };
        let url = mesh.quit_url().ok_or_else(|| {
            format!(
                "{asked_by}: --mesh {} has no quit URL; give --quit-url",
                mesh.name()
            )
        })?;
        vec![url.parse()?]
    } else {
        Vec::new()
    };
    Ok(QuitPlan {
        urls,
        on: args.quit_on.unwrap_or(QuitOn::Success),
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    fn plan(args: &[&str]) -> Result<Plan, String> {
        let cli = Cli::parse_args(args.iter().map(OsString::from).collect())
            .map_err(|e| e.to_string())?;
        Plan::from_cli(cli)
    }

    #[test]
    fn watched_listeners_come_from_the_mesh_unless_given() {
        let watch = |args: &[&str]| match plan(args).unwrap() {
            Plan::Ready { gate, .. } => gate.watch_ports,
            other => panic!("not ready: {other:?}"),
        };
        assert_eq!(watch(&["meshwait", "ready"]), [15001, 15006]);
        assert_eq!(
            watch(&["meshwait", "ready", "--mesh", "linkerd"]),
            [4140, 4143]
        );
        assert!(watch(&["meshwait", "ready", "--mesh", "envoy"]).is_empty());
        assert_eq!(
            watch(&["meshwait", "ready", "--watch-listener", "9000,9001"]),
            [9000, 9001]
        );
        assert!(watch(&["meshwait", "ready", "--watch-listener", "0"]).is_empty());
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
        assert_eq!(run.app.program, "app");
        assert_eq!(run.app.args, ["x"]);
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
    fn proxy_rules_from_mesh_or_flags() {
        let Plan::Drain { sockets, until, .. } = plan(&["meshwait", "drain"]).unwrap() else {
            panic!()
        };
        assert_eq!(until, Until::Idle);
        assert_eq!(sockets.rules.uids, [1337]);
        assert!(sockets.rules.ports.contains(15020) && !sockets.rules.ports.contains(8080));
        let Plan::Conns { sockets, .. } = plan(&[
            "meshwait",
            "conns",
            "--mesh",
            "linkerd",
            "--proxy-uid",
            "7",
            "--proxy-uid",
            "8",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(sockets.rules.uids, [7, 8]);
        assert!(sockets.rules.ports.contains(4143) && !sockets.rules.ports.contains(15020));
        let Plan::Conns { sockets, .. } =
            plan(&["meshwait", "conns", "--proxy-port", "9000-9001,15020"]).unwrap()
        else {
            panic!()
        };
        assert!(sockets.rules.ports.contains(9001) && !sockets.rules.ports.contains(15000));
    }

    #[test]
    fn drain_defaults_follow_the_mesh() {
        let Plan::Run(run) = plan(&["meshwait", "app"]).unwrap() else {
            panic!()
        };
        assert_eq!(run.app.hold.drain_timeout, Duration::from_secs(20));
        let Plan::Run(run) = plan(&["meshwait", "--mesh", "none", "app"]).unwrap() else {
            panic!()
        };
        assert_eq!(run.app.hold.drain_timeout, Duration::ZERO);
        let Plan::Run(run) =
            plan(&["meshwait", "--mesh", "none", "--drain-timeout", "5s", "app"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(run.app.hold.drain_timeout, Duration::from_secs(5));
        let err = plan(&["meshwait", "--drain-on", "TERM,KILL", "app"]).unwrap_err();
        assert!(err.contains("SIGKILL can never be held"), "{err}");
    }

    #[test]
    fn the_ambient_preset_has_no_gate_a_drain_and_a_shutdown_delay() {
        let Plan::Run(run) = plan(&["meshwait", "--mesh", "ambient", "app"]).unwrap() else {
            panic!()
        };
        assert!(run.gate.is_none());
        assert!(run.quit.urls.is_empty());
        assert_eq!(run.app.hold.drain_timeout, Duration::from_secs(20));
        assert_eq!(run.app.hold.shutdown_delay, Duration::from_secs(5));
        let rules = &run.app.hold.sockets.rules;
        assert!(rules.uids.is_empty(), "root is not ztunnel's alone");
        for port in [15001, 15006, 15008, 15053] {
            assert!(rules.ports.contains(port), "{port}");
        }
        assert!(!rules.ports.contains(15020) && !rules.ports.contains(15000));
        assert!(rules.peer_ports.contains(15008) && !rules.peer_ports.contains(15001));
        assert!(
            run.app.hold.sockets.sidecar.is_none(),
            "no Envoy admin to read"
        );
        // Given, the delay is the user's; the other presets have none.
        let Plan::Run(run) = plan(&[
            "meshwait",
            "--mesh",
            "ambient",
            "--shutdown-delay",
            "0",
            "app",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(run.app.hold.shutdown_delay, Duration::ZERO);
        let Plan::Run(run) = plan(&["meshwait", "app"]).unwrap() else {
            panic!()
        };
        assert_eq!(run.app.hold.shutdown_delay, Duration::ZERO);
        assert!(!run.app.hold.sockets.rules.peer_ports.contains(15008));
        let err = plan(&["meshwait", "ready", "--mesh", "ambient"]).unwrap_err();
        assert!(err.contains("--mesh ambient has no readiness URL"), "{err}");
        let err = plan(&["meshwait", "--mesh", "ambient", "--quit-proxy", "app"]).unwrap_err();
        assert!(err.contains("--mesh ambient has no quit URL"), "{err}");
    }

    #[test]
    fn the_sidecar_is_read_where_the_mesh_has_an_envoy_admin() {
        let sidecar = |args: &[&str]| match plan(args) {
            Ok(Plan::Drain { sockets, .. }) => sockets.sidecar,
            Ok(Plan::Run(run)) => run.app.hold.sockets.sidecar,
            other => panic!("{other:?}"),
        };
        let istio = sidecar(&["meshwait", "drain"]).expect("istio reads Envoy's admin");
        assert_eq!(istio.admin.to_string(), "http://localhost:15000");
        assert!(istio.rules.names_only);
        assert_eq!(istio.outbound_hold, Duration::from_secs(5));
        assert_eq!(istio.bound, Duration::from_secs(1));
        let envoy = sidecar(&[
            "meshwait",
            "--mesh",
            "envoy",
            "--outbound-hold",
            "0",
            "--request-timeout",
            "300ms",
            "app",
        ])
        .unwrap();
        assert!(!envoy.rules.names_only && envoy.outbound_hold.is_zero());
        assert_eq!(envoy.bound, Duration::from_millis(300));
        assert!(sidecar(&["meshwait", "drain", "--mesh", "linkerd"]).is_none());
        assert!(sidecar(&["meshwait", "drain", "--admin-url", "none"]).is_none());
        // Checked whether or not a gate will use it: the drain does.
        let err = plan(&["meshwait", "--no-wait", "--admin-url", "ftp://x", "app"]).unwrap_err();
        assert!(
            err.contains("'ftp://x'") && err.contains("--admin-url"),
            "{err}"
        );
    }

    #[test]
    fn quit_urls() {
        let Plan::Run(run) = plan(&["meshwait", "--quit-proxy", "app"]).unwrap() else {
            panic!()
        };
        assert_eq!(
            run.quit.urls[0].to_string(),
            "http://localhost:15020/quitquitquit"
        );
        assert!(run.quit.wanted(0) && !run.quit.wanted(1));
        let Plan::Run(run) = plan(&["meshwait", "app"]).unwrap() else {
            panic!()
        };
        assert!(!run.quit.wanted(0));
        let Plan::Run(run) = plan(&[
            "meshwait",
            "--quit-url",
            "http://127.0.0.1:9091/quitquitquit",
            "--quit-on",
            "always",
            "app",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(run.quit.urls.len(), 1);
        assert!(run.quit.wanted(3));
        let err = plan(&["meshwait", "--mesh", "none", "--quit-proxy", "app"]).unwrap_err();
        assert!(err.contains("give --quit-url"), "{err}");
        // A peer's "quit on any exit" (scuttle, linkerd-await --shutdown) is one setting.
        for on in ["always", "success"] {
            let Plan::Run(run) = plan(&["meshwait", "--quit-on", on, "app"]).unwrap() else {
                panic!()
            };
            assert_eq!(
                run.quit.urls[0].to_string(),
                "http://localhost:15020/quitquitquit"
            );
            assert_eq!(run.quit.wanted(3), on == "always");
            assert!(run.quit.wanted(0));
        }
        let err = plan(&["meshwait", "--mesh", "none", "--quit-on", "always", "app"]).unwrap_err();
        assert!(err.starts_with("--quit-on:"), "{err}");
    }

    #[test]
    fn empty_program_is_rejected() {
        let err = plan(&["meshwait", "--", ""]).unwrap_err();
        assert!(err.contains("missing command"), "{err}");
    }
}

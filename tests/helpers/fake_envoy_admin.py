"""A stand-in for Envoy's admin `/clusters` (and the upgrade stat), healthy or faulty.

usage: fake_envoy_admin.py MODE PORT STATE_FILE

Prints "listening PORT" when ready, then serves until killed or stdin closes.

STATE_FILE holds the live counts, one `CLUSTER HOST REQUESTS` line each (re-read at every request,
so a test changes what Envoy "has in flight" by rewriting it), and optionally `upgraded N`. Every
request is appended to STATE_FILE + ".log" as "GET PATH", so a test can count the reads.

Modes:
  serve    /clusters in Envoy's text format: the state's clusters among 50 idle ones
  hang     accept, read the request, never answer
  garbage  200 with an HTML page
  huge     200 with an endless body of valid-looking idle cluster lines
  once     serve the first /clusters, then exit (Envoy stopped mid-drain)
"""

import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE, PORT, STATE = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def state():
    clusters, upgraded = [], None
    try:
        with open(STATE) as f:
            for line in f:
                words = line.split()
                if len(words) == 2 and words[0] == "upgraded":
                    upgraded = int(words[1])
                elif len(words) == 3:
                    clusters.append((words[0], words[1], int(words[2])))
    except FileNotFoundError:
        pass
    return clusters, upgraded


def page(clusters):
    lines = []
    for i in range(25):
        name = f"outbound|80||idle-{i}.ns.svc.cluster.local"
        lines += [f"{name}::observability_name::{name}",
                  f"{name}::10.0.0.{i}:80::cx_active::0", f"{name}::10.0.0.{i}:80::rq_active::0"]
    # The proxy's own stream to its control plane is always active: never the app's.
    lines += ["xds-grpc::observability_name::xds-grpc", "xds-grpc::127.0.0.1:15010::rq_active::1"]
    for cluster, host, n in clusters:
        lines += [f"{cluster}::observability_name::{cluster}", f"{cluster}::{host}::cx_active::1",
                  f"{cluster}::{host}::rq_active::{n}", f"{cluster}::{host}::rq_total::{n + 3}"]
    for i in range(25, 50):
        name = f"outbound|80||idle-{i}.ns.svc.cluster.local"
        lines += [f"{name}::10.0.1.{i}:80::rq_active::0"]
    return ("\n".join(lines) + "\n").encode()


served = threading.Event()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        with open(STATE + ".log", "a") as log:
            log.write(f"GET {self.path} {time.monotonic():.6f}\n")
        if MODE == "hang":
            threading.Event().wait()
        if MODE == "garbage":
            return self.send(b"<html><body>admin moved</body></html>\n")
        if MODE == "huge":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            line = b"outbound|80||idle.ns.svc.cluster.local::10.0.0.1:80::rq_active::0\n" * 1000
            try:
                while True:
                    self.wfile.write(line)
            except OSError:
                return
        clusters, upgraded = state()
        if self.path.startswith("/clusters"):
            self.send(page(clusters))
            if MODE == "once":
                served.set()
        elif self.path.startswith("/stats"):
            body = b"" if upgraded is None else \
                f"http.inbound_0.0.0.0_8080.downstream_cx_upgrades_active: {upgraded}\n".encode()
            self.send(body)
        else:
            self.send(b"not found\n", 404)

    def send(self, body, code=200):
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def log_message(self, *a):
        pass


def main():
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"listening {server.server_address[1]}", flush=True)
    if MODE == "once":
        served.wait()
        time.sleep(0.05)
        os._exit(0)
    # Until stdin closes (the test ended) or the process is killed.
    sys.stdin.read()


if __name__ == "__main__":
    main()

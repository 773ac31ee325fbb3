"""The app container's program: an ordinary, well-behaved service.

- At its very first instruction it calls the upstream service (many apps fetch configuration or
  open a database connection at start-up). In the pod that call goes through the sidecar.
- With --serve it serves HTTP: GET /work?secs=N calls the upstream's slow endpoint (an outbound
  request in flight) and answers when that returns (an inbound request in flight).
- On SIGTERM it shuts down gracefully, as a good app should: it stops accepting connections,
  finishes the requests it has, then exits 0. Whatever still fails at shutdown is not the app's
  fault but the sidecar's going away.
- With --exit N (a Job) it exits with N after the first call.
"""

import argparse
import http.server
import signal
import sys
import threading
import time
import urllib.error
import urllib.request

urllib.request.install_opener(urllib.request.build_opener(urllib.request.ProxyHandler({})))


def log(msg):
    print(f"app: {time.time():.3f} {msg}", flush=True)


def call(url, timeout):
    """(ok, description) of one GET."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return True, f"{r.status} {r.read().decode().strip()}"
    except urllib.error.HTTPError as e:
        return False, f"HTTP {e.code} {e.read().decode().strip()}"
    except urllib.error.URLError as e:
        return False, f"{type(e.reason).__name__}: {e.reason}"
    except OSError as e:
        return False, f"{type(e).__name__}: {e}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True, help="base URL of the upstream service")
    ap.add_argument("--serve", type=int, help="port to serve on")
    ap.add_argument("--exit", type=int, help="exit with this code after the first call (a Job)")
    args = ap.parse_args()

    ok, what = call(args.upstream + "/hello", timeout=5)
    log(f"first call {'ok' if ok else 'FAILED'}: {what}")
    if args.exit is not None:
        sys.exit(args.exit)
    if not ok:
        sys.exit(1)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Close keep-alive connections idle this long, so that a shutdown waits for requests,
        # not for callers that merely keep a connection open.
        timeout = 2

        def do_GET(self):
            if self.path.startswith("/work"):
                secs = float(self.path.partition("secs=")[2] or "1")
                log(f"request {self.path}: calling upstream")
                ok, what = call(f"{args.upstream}/slow?secs={secs}", timeout=60)
                code, body = (200, f"work done: {what}") if ok else (502, f"upstream failed: {what}")
                log(f"request {self.path}: answering {code}")
            else:
                code, body = 200, "ok"
            data = (body + "\n").encode()
            try:
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError as e:
                log(f"request {self.path}: the caller is gone ({e})")

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", args.serve), Handler)
    # Requests finish before the process exits: server_close() joins the handler threads.
    server.daemon_threads = False
    server.block_on_close = True

    def on_term(*_):
        log("SIGTERM: finishing requests in flight")
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, on_term)
    log(f"serving on :{args.serve}")
    server.serve_forever()
    server.socket.close()  # stop listening at once, before waiting for requests in flight
    server.server_close()
    log("exiting")


if __name__ == "__main__":
    main()

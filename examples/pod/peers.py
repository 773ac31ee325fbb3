"""The pod's peers in the rest of the cluster.

- `upstream`: the service the app calls. GET /hello answers at once and says whether the call
  came through Envoy (Envoy adds x-request-id); GET /slow?secs=N answers after N seconds.
- `client`: one GET to the app through the pod's inbound path; prints one JSON line with the
  status, the body and the time taken, or the error that ended it, and when it was sent and
  ended (wall clock).
"""

import argparse
import http.server
import json
import sys
import time
import urllib.error
import urllib.request

urllib.request.install_opener(urllib.request.build_opener(urllib.request.ProxyHandler({})))


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        via = "via envoy" if self.headers.get("x-request-id") else "direct"
        if self.path.startswith("/slow"):
            secs = float(self.path.partition("secs=")[2] or "1")
            time.sleep(secs)
            body = f"slow answer after {secs:g}s ({via})"
        else:
            body = f"hello from upstream ({via})"
        data = (body + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


def client(url, timeout, retry_for):
    start = time.monotonic()
    # The pod's recording (recording.py) places the call on the containers' clock, the wall clock.
    sent_at = time.time()
    while True:
        result = {"url": url, "sent_at": sent_at}
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                result.update(status=r.status, body=r.read().decode().strip())
        except urllib.error.HTTPError as e:
            result.update(status=e.code, body=e.read().decode(errors="replace").strip())
        except Exception as e:  # noqa: BLE001 - any failure is the observation
            result.update(error=f"{type(e).__name__}: {e}")
        result["elapsed_s"] = round(time.monotonic() - start, 3)
        result["ended_at"] = time.time()
        if result.get("status") == 200 or time.monotonic() - start >= retry_for:
            return result
        time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="role", required=True)
    up = sub.add_parser("upstream")
    up.add_argument("--listen", required=True, help="host:port")
    cl = sub.add_parser("client")
    cl.add_argument("url")
    cl.add_argument("--timeout", type=float, default=60)
    cl.add_argument("--retry-for", type=float, default=0, help="retry until 200 for this long")
    args = ap.parse_args()
    if args.role == "upstream":
        host, _, port = args.listen.rpartition(":")
        srv = http.server.ThreadingHTTPServer((host, int(port)), Upstream)
        srv.daemon_threads = True
        print("upstream: listening", flush=True)
        srv.serve_forever()
    else:
        print(json.dumps(client(args.url, args.timeout, args.retry_for)), flush=True)
        sys.exit(0)


if __name__ == "__main__":
    main()

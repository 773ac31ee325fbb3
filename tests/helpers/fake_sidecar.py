"""A stand-in for an Istio sidecar's local endpoints, in one of a few troubled states.

usage: fake_sidecar.py MODE STATUS_PORT ADMIN_PORT [LISTEN_PORT ...]

STATUS_PORT plays pilot-agent (/healthz/ready; GET /quitquitquit is 405, as pilot-agent answers),
ADMIN_PORT plays Envoy's admin (/ready and /stats), each LISTEN_PORT is a bare listener (the capture
ports). Port 0 leaves that endpoint out. Prints the bound ports as "ports STATUS ADMIN" when
listening, then serves until stdin closes.

Modes:
  healthy    200; Envoy LIVE, CDS and LDS accepted
  no-config  pilot-agent's real 503 (empty body); Envoy PRE_INITIALIZING, no updates, 5 failed
             fetches; the LISTEN_PORTs are not opened (Envoy opens them only when configured)
  rejected   503 with the guide's text; Envoy LIVE with an LDS update rejected
  hang       both endpoints accept and never answer
"""

import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE = sys.argv[1]

STATS = {
    "healthy": (1, 0, 1, 0, 0, 1),
    "no-config": (0, 0, 0, 0, 5, 0),
    "rejected": (1, 0, 0, 1, 0, 0),
}

GUIDE = (
    "config not received from Pilot (is Pilot running?): cds updates: 1 successful, 0 rejected; "
    "lds updates: 0 successful, 1 rejected"
)


class Handler(BaseHTTPRequestHandler):
    role = "status"

    def answer(self, code, body=""):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if MODE == "hang":
            threading.Event().wait()
        path = self.path.split("?")[0]
        if self.role == "status":
            if path == "/healthz/ready":
                if MODE == "healthy":
                    self.answer(200)
                elif MODE == "rejected":
                    self.answer(503, GUIDE)
                else:
                    self.answer(503)
            elif path == "/quitquitquit":
                self.answer(405, "Method Not Allowed\n")
            else:
                self.answer(404)
        else:
            if path == "/ready":
                state = "PRE_INITIALIZING" if MODE == "no-config" else "LIVE"
                self.answer(200 if state == "LIVE" else 503, state + "\n")
            elif path == "/stats":
                cs, cr, ls, lr, cf, ws = STATS[MODE]
                self.answer(
                    200,
                    f"cluster_manager.cds.update_failure: {cf}\n"
                    f"cluster_manager.cds.update_rejected: {cr}\n"
                    f"cluster_manager.cds.update_success: {cs}\n"
                    f"listener_manager.lds.update_rejected: {lr}\n"
                    f"listener_manager.lds.update_success: {ls}\n"
                    f"listener_manager.workers_started: {ws}\n",
                )
            else:
                self.answer(404)

    def log_message(self, *args):
        pass


def serve(port, role):
    handler = type(role, (Handler,), {"role": role})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def main():
    status_port, admin_port = int(sys.argv[2]), int(sys.argv[3])
    bound = [serve(status_port, "status"), serve(admin_port, "admin")]
    held = []
    if MODE != "no-config":
        for port in sys.argv[4:]:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", int(port)))
            s.listen()
            held.append(s)
    print("ports", *bound, flush=True)
    sys.stdin.read()


main()

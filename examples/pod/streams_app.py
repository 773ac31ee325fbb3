"""The app container's program for the streaming scenario: a naive service whose work is long
streams rather than long requests.

- gRPC on :8090 (HTTP/2, which the sidecar forwards as HTTP/2, so many calls can share one
  connection): `Slow` answers after the number of seconds it is sent; `Ticks` streams a number
  of messages a gap apart, the first at once.
- HTTP/1.1 on :8080: GET /sse?events=N&gap=S answers text/event-stream, N events S seconds apart,
  the first at once; GET /ws accepts a WebSocket (the handshake only) and then holds the socket,
  silent, until the caller or the process goes; GET /healthz answers 200.
- Its own calls, with --upstream HOST:PORT (a gRPC service in the cluster, reached through the
  sidecar's outbound path as every outgoing connection is): with --watch it opens `Watch` at
  start, a server stream that never ends, and logs each message; GET /call-out?secs=N answers
  202 at once and then calls `Slow` (an answer after N s) in the background, logging how the call
  ended, on a channel of its own or, with `&on=watch`, on the watch's (one HTTP/2 connection for
  both, as an app that keeps one channel per service has). So the work in flight at a shutdown
  can be the app's own call, with no inbound request to show for it.

It is naive on purpose: no SIGTERM handler, so Python's default action applies and it dies at
once when the signal reaches it, cutting whatever is in flight. (As PID 1 of its container the
kernel drops that SIGTERM instead, since PID 1 has no default actions; the app then runs on until
the kubelet's SIGKILL.) The streams are what the kernel's view of a socket cannot see: calls
multiplexed on one HTTP/2 connection, and answers that are silent between their chunks.

gRPC without generated code: generic handlers, raw bytes in and out, JSON inside.
"""

import argparse
import base64
import hashlib
import http.server
import json
import threading
import time
import urllib.parse
from concurrent import futures

import grpc

SERVICE = "meshwait.pod.Streams"
UPSTREAM_SERVICE = "meshwait.pod.Upstream"
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def log(msg):
    print(f"app: {time.time():.3f} {msg}", flush=True)


def slow(request, context):
    secs = float(json.loads(request or b"{}").get("secs", 0))
    log(f"grpc Slow: started ({secs:g}s)")
    time.sleep(secs)
    log(f"grpc Slow: answering (client {'still there' if context.is_active() else 'gone'})")
    return json.dumps({"slept_s": secs}).encode()


def ticks(request, context):
    args = json.loads(request or b"{}")
    count, gap = int(args.get("messages", 4)), float(args.get("gap", 2.5))
    log(f"grpc Ticks: started ({count} messages, {gap:g}s apart)")
    for i in range(1, count + 1):
        if i > 1:
            time.sleep(gap)
        if not context.is_active():
            log(f"grpc Ticks: the client is gone before message {i}")
            return
        log(f"grpc Ticks: message {i}/{count}")
        yield json.dumps({"n": i, "of": count}).encode()
    log("grpc Ticks: done")


def upstream_channel(target):
    # No HTTP proxy from the environment: the call must take the pod's outbound path.
    return grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)])


# The watch's channel, for calls made beside it.
watch_channel = None


def watch(target):
    """The watch: open at start, logs every message, never ends by itself."""
    global watch_channel
    log(f"watch: opening {target}")
    with upstream_channel(target) as channel:
        watch_channel = channel
        try:
            for i, message in enumerate(channel.unary_stream(f"/{UPSTREAM_SERVICE}/Watch")(b"{}"),
                                        1):
                log(f"watch: message {i} (via {json.loads(message).get('via')})")
            log("watch: ended by the upstream")
        except grpc.RpcError as e:
            log(f"watch: failed {e.code().name} ({e.details()})")


def call_out(target, secs, beside_watch):
    """One call the app waits on: on a channel of its own, closed once answered, or on the
    watch's."""
    log(f"call-out: calling upstream ({secs:g}s{', beside the watch' if beside_watch else ''})")
    own = None if beside_watch else upstream_channel(target)
    try:
        answer = (own or watch_channel).unary_unary(f"/{UPSTREAM_SERVICE}/Slow")(
            json.dumps({"secs": secs}).encode(), timeout=60)
        log(f"call-out ok after {secs:g}s (via {json.loads(answer).get('via')})")
    except grpc.RpcError as e:
        log(f"call-out failed {e.code().name} ({e.details()})")
    finally:
        if own:
            own.close()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        try:
            if url.path == "/sse":
                self.sse(int(query.get("events", 4)), float(query.get("gap", 2.5)))
            elif url.path == "/ws":
                self.websocket()
            elif url.path == "/call-out" and self.server.upstream:
                secs = float(query.get("secs", 4))
                beside_watch = query.get("on") == "watch" and watch_channel is not None
                threading.Thread(target=call_out,
                                 args=(self.server.upstream, secs, beside_watch),
                                 daemon=True).start()
                body = b"calling upstream\n"
                self.send_response(202)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                code, body = (200, b"ok\n") if url.path == "/healthz" else (404, b"not found\n")
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        except OSError as e:
            log(f"{url.path}: the caller is gone ({e})")

    def sse(self, count, gap):
        log(f"sse: started ({count} events, {gap:g}s apart)")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(1, count + 1):
            if i > 1:
                time.sleep(gap)
            event = f"id: {i}\ndata: event {i}/{count}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
            log(f"sse: event {i}/{count}")
        self.wfile.write(b"0\r\n\r\n")
        log("sse: done")

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        if self.headers.get("Upgrade", "").lower() != "websocket" or not key:
            self.send_error(400, "not a WebSocket handshake")
            return
        accept = base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest())
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept.decode())
        self.end_headers()
        self.wfile.flush()
        log("websocket: open")
        # Hold the socket, reading (and ignoring) frames until the caller closes it.
        while self.connection.recv(4096):
            pass
        log("websocket: closed by the client")
        self.close_connection = True

    def log_message(self, *a):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http", type=int, default=8080, help="HTTP/1.1 port (SSE, WebSocket)")
    ap.add_argument("--grpc", type=int, default=8090, help="gRPC port")
    ap.add_argument("--upstream", help="HOST:PORT of the gRPC upstream the app calls")
    ap.add_argument("--watch", action="store_true", help="open the upstream's Watch at start")
    args = ap.parse_args()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Ticks": grpc.unary_stream_rpc_method_handler(ticks),
    })])
    server.add_insecure_port(f"0.0.0.0:{args.grpc}")
    server.start()
    http_server = http.server.ThreadingHTTPServer(("0.0.0.0", args.http), Handler)
    http_server.daemon_threads = True
    http_server.upstream = args.upstream
    log(f"serving gRPC on :{args.grpc}, HTTP on :{args.http}")
    if args.watch:
        threading.Thread(target=watch, args=(args.upstream,), daemon=True).start()
    http_server.serve_forever()


if __name__ == "__main__":
    main()

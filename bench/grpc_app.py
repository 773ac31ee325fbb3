#!/usr/bin/env python3
"""The gRPC app and client of bench/admin.py's figure 11 (drain detection through the sidecar view).

    grpc_app.py serve --port 8080 --dir DIR --hold-ms 600   # the app, run under meshwait
    grpc_app.py client --target 127.0.0.1:15006             # the caller, through Envoy

serve: a gRPC server (grpcio, generic handler, no generated code) on 127.0.0.1:PORT with one unary
method, /bench.Hold/Hold, that sleeps HOLD ms and answers (a request whose bytes are a number asks
for that many ms instead: 0 for a short call). For the held calls it drops marker files in DIR,
each holding a CLOCK_MONOTONIC reading: `listening`, `received` (the request is in), `answered`
(taken as the handler returns its answer) and `sigterm` (in its SIGTERM handler, after which it
exits 0 at once). It exits 3 on its own after --max-life seconds, so nothing outlives a broken
benchmark.

client: one channel, kept open between calls (as a client's pool would keep it). A line `long TAG`
on stdin starts a held call without waiting for it; `short TAG` makes a call of 0 ms and waits
for it. Each call's end prints one JSON line: {"tag", "ok", "t_start", "t_done" (CLOCK_MONOTONIC
when the whole answer was in), "error"}. It exits at the end of its stdin.
"""

import argparse
import json
import os
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

METHOD = "/bench.Hold/Hold"


def mono():
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def put(where, name, value):
    """Writes `value` to DIR/name atomically (a reader never sees half a number)."""
    tmp = os.path.join(where, name + ".tmp")
    with open(tmp, "w") as f:
        f.write(repr(value))
    os.rename(tmp, os.path.join(where, name))


def serve(args):
    def on_term(_signum, _frame):
        put(args.dir, "sigterm", mono())
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)

    def hold(request, _context):
        ms = int(request) if request.isdigit() else args.hold_ms
        if ms == 0:
            return b"held 0 ms"
        put(args.dir, "received", mono())
        time.sleep(ms / 1000)
        answer = b"held %d ms" % ms
        put(args.dir, "answered", mono())
        return answer

    handler = grpc.method_handlers_generic_handler(
        "bench.Hold", {"Hold": grpc.unary_unary_rpc_method_handler(hold)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[handler])
    if server.add_insecure_port(f"127.0.0.1:{args.port}") == 0:
        sys.exit(f"grpc_app: cannot listen on 127.0.0.1:{args.port}")
    server.start()
    put(args.dir, "listening", mono())
    # The main thread sleeps, so the SIGTERM handler runs as soon as the signal arrives.
    deadline = mono() + args.max_life
    while mono() < deadline:
        time.sleep(0.5)
    os._exit(3)


def client(args):
    channel = grpc.insecure_channel(args.target, options=[("grpc.enable_http_proxy", 0)])
    call = channel.unary_unary(METHOD)  # bytes in, bytes out
    lock = threading.Lock()

    def report(tag, t_start, future):
        t_done = mono()  # the callback runs when the whole answer is in
        try:
            future.result()
            reply = {"tag": tag, "ok": True, "t_start": t_start, "t_done": t_done, "error": None}
        except grpc.RpcError as e:
            reply = {"tag": tag, "ok": False, "t_start": t_start, "t_done": None,
                     "error": f"{e.code().name}: {e.details()}"}
        with lock:
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()

    for line in sys.stdin:
        words = line.split()
        if len(words) != 2 or words[0] not in ("long", "short"):
            continue
        kind, tag = words
        t_start = mono()
        future = call.future(b"" if kind == "long" else b"0", timeout=args.timeout)
        future.add_done_callback(lambda f, tag=tag, t_start=t_start: report(tag, t_start, f))
        if kind == "short":
            try:
                future.result()
            except grpc.RpcError:
                pass  # reported by the callback
    channel.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--dir", required=True)
    s.add_argument("--hold-ms", type=int, default=600)
    s.add_argument("--max-life", type=float, default=120.0)
    c = sub.add_parser("client")
    c.add_argument("--target", required=True)
    c.add_argument("--timeout", type=float, default=15.0)
    args = ap.parse_args()
    return serve(args) if args.mode == "serve" else client(args)


if __name__ == "__main__":
    sys.exit(main())

"""The streaming app's peers in the rest of the cluster: its clients, each of which makes one call
through the pod's inbound path and prints one JSON line with what arrived and when, and a gRPC
upstream that the app calls through the sidecar's outbound path.

- `unary HOST:PORT --secs N`: the gRPC call `Slow` (one answer after N s);
- `stream HOST:PORT --messages N --gap S`: the gRPC server-streaming call `Ticks`;
- `idle HOST:PORT --secs N --hold S`: one `Slow` call, then the channel kept open and idle for S
  seconds, as a gRPC client keeps its channel between calls; `states` are the channel's
  connectivity changes meanwhile (READY to IDLE when the server's side goes);
- `sse URL`: GET an event stream over HTTP/1.1 and count its events;
- `ws URL`: open a WebSocket and hold it, silent, reading until the other end closes it;
- `upstream --listen HOST:PORT`: the gRPC upstream, serving `Watch` (a server stream that never
  ends: one message at once, then one every `--every` seconds, as a config watch or a pub/sub
  pull that stays open for the pod's life) and `Slow` (one answer after the number of seconds it
  is sent). It prints "listening", then logs each call.

Times are CLOCK_MONOTONIC readings (`time.monotonic()`), the clock the harness reads too, so the
harness can place them against the pod's deletion: `started`, `arrivals` (one per message or
event), `ended` (the call's end, or for the WebSocket when the connection was closed).
"""

import argparse
import base64
import http.client
import json
import os
import socket
import sys
import time
import urllib.parse

SERVICE = "meshwait.pod.Streams"
UPSTREAM_SERVICE = "meshwait.pod.Upstream"


def grpc_call(target, method, request, timeout, retry_for):
    import grpc

    start = time.monotonic()
    while True:
        result = {"call": f"grpc {method}", "started": start, "arrivals": []}
        # No HTTP proxy from the environment: the call must take the pod's inbound path.
        channel = grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)])
        try:
            stub = (channel.unary_stream if method == "Ticks" else channel.unary_unary)(
                f"/{SERVICE}/{method}")
            answers = stub(json.dumps(request).encode(), timeout=timeout)
            for _ in (answers if method == "Ticks" else [answers]):
                result["arrivals"].append(time.monotonic())
            result["code"] = "OK"
        except grpc.RpcError as e:
            result.update(code=e.code().name, error=e.details())
        finally:
            channel.close()
        result["ended"] = time.monotonic()
        if result["code"] == "OK" or result["ended"] - start >= retry_for:
            return result
        time.sleep(0.1)


def grpc_idle(target, secs, hold, timeout):
    """One `Slow` call, then the channel kept open, with no call on it, for `hold` seconds."""
    import grpc

    result = {"call": "grpc Slow, then idle", "started": time.monotonic(), "arrivals": []}
    states = []
    channel = grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)])
    channel.subscribe(lambda state: states.append((time.monotonic(), state.name)))
    try:
        channel.unary_unary(f"/{SERVICE}/Slow")(json.dumps({"secs": secs}).encode(),
                                                timeout=timeout)
        result["arrivals"].append(time.monotonic())
        result["code"] = "OK"
        time.sleep(hold)
    except grpc.RpcError as e:
        result.update(code=e.code().name, error=e.details())
    finally:
        result["states"] = list(states)
        channel.close()
    result["ended"] = time.monotonic()
    return result


def sse(url, timeout):
    result = {"call": "sse", "started": time.monotonic(), "arrivals": []}
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", f"{parts.path}?{parts.query}", headers={"Accept": "text/event-stream"})
        response = conn.getresponse()
        result["status"] = response.status
        # read1(), not readline(): readline() ends quietly at a connection closed mid-answer,
        # where read1() raises IncompleteRead.
        pending = b""
        while data := response.read1():
            pending += data
            *lines, pending = pending.split(b"\n")
            result["arrivals"] += [time.monotonic() for line in lines if line.startswith(b"data:")]
    except Exception as e:  # noqa: BLE001 - any failure is the observation
        result["error"] = f"{type(e).__name__}: {e}"
    finally:
        conn.close()
    result["ended"] = time.monotonic()
    return result


def websocket(url, timeout):
    result = {"call": "websocket", "started": time.monotonic(), "arrivals": []}
    parts = urllib.parse.urlsplit(url)
    key = base64.b64encode(os.urandom(16)).decode()
    try:
        sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        sock.sendall((f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(4096)
            if not data:
                raise ConnectionError("closed during the handshake")
            head += data
        status = head.split(b"\r\n", 1)[0].decode(errors="replace")
        result["status"] = int(status.split()[1])
        if result["status"] != 101:
            raise ConnectionError(f"handshake refused: {status}")
        result["opened"] = time.monotonic()
        # Hold the socket and read until the other end goes: end of stream or a reset.
        received = len(head.partition(b"\r\n\r\n")[2])
        while True:
            data = sock.recv(4096)
            if not data:
                result["closed_by"] = "end of stream"
                break
            received += len(data)
        result["bytes_after_handshake"] = received
    except (ConnectionResetError, BrokenPipeError) as e:
        result["closed_by"] = f"{type(e).__name__}"
    except Exception as e:  # noqa: BLE001 - any failure is the observation
        result["error"] = f"{type(e).__name__}: {e}"
    result["ended"] = time.monotonic()
    return result


def upstream(listen, every):
    """The gRPC upstream in the cluster; serves until killed. Each answer says whether the call
    came through Envoy (Envoy adds x-request-id), so the app's log shows the path it took."""
    import grpc
    from concurrent import futures

    def log(msg):
        print(f"upstream: {time.time():.3f} {msg}", flush=True)

    def via(context):
        return "envoy" if any(k == "x-request-id" for k, _ in context.invocation_metadata()) \
            else "direct"

    def watch(request, context):
        log(f"Watch: opened (via {via(context)})")
        n = 0
        while context.is_active():
            if n:
                time.sleep(every)
            n += 1
            yield json.dumps({"n": n, "via": via(context)}).encode()
        log(f"Watch: the caller is gone after {n - 1} messages")

    def slow(request, context):
        secs = float(json.loads(request or b"{}").get("secs", 0))
        log(f"Slow: started ({secs:g}s, via {via(context)})")
        time.sleep(secs)
        log(f"Slow: answering (caller {'still there' if context.is_active() else 'gone'})")
        return json.dumps({"slept_s": secs, "via": via(context)}).encode()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(UPSTREAM_SERVICE, {
        "Watch": grpc.unary_stream_rpc_method_handler(watch),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
    })])
    server.add_insecure_port(listen)
    server.start()
    print("listening", flush=True)
    server.wait_for_termination()


def main():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--timeout", type=float, default=60, help="give up after this long")
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="call", required=True)
    unary = sub.add_parser("unary", parents=[common])
    unary.add_argument("target", help="host:port")
    unary.add_argument("--secs", type=float, default=8)
    unary.add_argument("--retry-for", type=float, default=0, help="retry until OK this long")
    stream = sub.add_parser("stream", parents=[common])
    stream.add_argument("target", help="host:port")
    stream.add_argument("--messages", type=int, default=4)
    stream.add_argument("--gap", type=float, default=2.5)
    idle = sub.add_parser("idle", parents=[common])
    idle.add_argument("target", help="host:port")
    idle.add_argument("--secs", type=float, default=0)
    idle.add_argument("--hold", type=float, default=4, help="keep the channel this long after")
    up = sub.add_parser("upstream")
    up.add_argument("--listen", required=True, help="host:port")
    up.add_argument("--every", type=float, default=2, help="seconds between a watch's messages")
    for name in ("sse", "ws"):
        sub.add_parser(name, parents=[common]).add_argument("url")
    args = ap.parse_args()
    if args.call == "upstream":
        upstream(args.listen, args.every)
        return
    if args.call == "unary":
        result = grpc_call(args.target, "Slow", {"secs": args.secs}, args.timeout, args.retry_for)
    elif args.call == "stream":
        result = grpc_call(args.target, "Ticks", {"messages": args.messages, "gap": args.gap},
                           args.timeout, 0)
    elif args.call == "idle":
        result = grpc_idle(args.target, args.secs, args.hold, args.timeout)
    elif args.call == "sse":
        result = sse(args.url, args.timeout)
    else:
        result = websocket(args.url, args.timeout)
    result["elapsed_s"] = round(result["ended"] - result["started"], 3)
    print(json.dumps(result), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()

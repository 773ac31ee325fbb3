"""Clients of the streaming app (streams_app.py), run in the rest of the cluster: each makes one
call through the pod's inbound path and prints one JSON line with what arrived and when.

- `unary HOST:PORT --secs N`: the gRPC call `Slow` (one answer after N s);
- `stream HOST:PORT --messages N --gap S`: the gRPC server-streaming call `Ticks`;
- `sse URL`: GET an event stream over HTTP/1.1 and count its events;
- `ws URL`: open a WebSocket and hold it, silent, reading until the other end closes it.

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
    for name in ("sse", "ws"):
        sub.add_parser(name, parents=[common]).add_argument("url")
    args = ap.parse_args()
    if args.call == "unary":
        result = grpc_call(args.target, "Slow", {"secs": args.secs}, args.timeout, args.retry_for)
    elif args.call == "stream":
        result = grpc_call(args.target, "Ticks", {"messages": args.messages, "gap": args.gap},
                           args.timeout, 0)
    elif args.call == "sse":
        result = sse(args.url, args.timeout)
    else:
        result = websocket(args.url, args.timeout)
    result["elapsed_s"] = round(result["ended"] - result["started"], 3)
    print(json.dumps(result), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()

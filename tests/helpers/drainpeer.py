#!/usr/bin/env python3
"""Peers for drain tests. Each prints lines with CLOCK_MONOTONIC seconds and exits when stdin
closes (so the test controls how long connections stay open).

  request PORT PATH     one GET; prints `done <status> <body-bytes> <t>` or `broken <why> <t>`
  reuse PORT PATH       GET /fast, then at once GET PATH on the same connection; prints as request
  request6 PORT PATH    as request, to [::1]:PORT
  keepalive PORT        one GET /fast, then keeps the connection open and idle: `idle <t>`
  blackhole PORT        listen on PORT, accept, read, never answer: `listening <t>`
  call PORT             connect to PORT, send a line, wait for an answer that never comes: `called <t>`
  pair PORT             blackhole and call in one process (a busy connection, both ends ours)

With PEER_HOST set, blackhole and call use that address instead of 127.0.0.1.

With PEER_UID set, it switches to that user before opening any socket (the kernel records the
socket's owner at creation), so it can stand in for a proxy running as 1337.
"""
import os
import socket
import sys
import threading
import time


HOST = os.environ.get("PEER_HOST", "127.0.0.1")


def say(*words):
    print(" ".join(str(w) for w in words), f"{time.monotonic():.6f}", flush=True)


def get(sock, path):
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: app\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the headers")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    status = int(head.split(b" ")[1])
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        while not body.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed inside the chunked body")
            body += chunk
    else:
        length = int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
        while len(body) < length:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed inside the body")
            body += chunk
    return status, len(body)


def wait_stdin():
    sys.stdin.read()


def blackhole(port, ready=True):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((HOST, port))
    srv.listen(8)
    if ready:
        say("listening")

    def hold():
        conns = []
        while True:
            conn, _ = srv.accept()
            conns.append(conn)
            conn.recv(4096)

    threading.Thread(target=hold, daemon=True).start()


def call(port):
    c = socket.create_connection((HOST, port))
    c.sendall(b"are you there?\n")
    say("called")
    return c


if os.environ.get("PEER_UID"):
    # Everything must be imported before giving up root: the interpreter's own files may be
    # readable by root only.
    import encodings.idna  # noqa: F401
    os.setgid(int(os.environ["PEER_UID"]))
    os.setuid(int(os.environ["PEER_UID"]))

mode, port = sys.argv[1], int(sys.argv[2])
if mode in ("request", "reuse", "request6"):
    s = socket.create_connection(("::1" if mode == "request6" else "127.0.0.1", port))
    try:
        if mode == "reuse":
            get(s, "/fast")
        status, size = get(s, sys.argv[3])
        say("done", status, size)
    except OSError as e:
        say("broken", type(e).__name__)
    wait_stdin()
elif mode == "keepalive":
    s = socket.create_connection(("127.0.0.1", port))
    get(s, "/fast")
    say("idle")
    wait_stdin()
elif mode == "blackhole":
    blackhole(port)
    wait_stdin()
elif mode == "call":
    c = call(port)
    wait_stdin()
elif mode == "pair":
    blackhole(port, ready=False)
    c = call(port)
    wait_stdin()
else:
    sys.exit(f"unknown mode {mode}")

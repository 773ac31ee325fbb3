#!/usr/bin/env python3
"""The app for drain tests: an HTTP/1.1 keep-alive server on 127.0.0.1.

  GET /fast           answers at once
  GET /slow/<ms>      answers after <ms>
  GET /stream/<n>/<ms> sends <n> chunks, one every <ms>

Events go to the file named by --events, one per line, with CLOCK_MONOTONIC seconds:
  listening <t> | request <path> <t> | answered <path> <t> | USR1 <t> | INT <t> | TERM <t>
On SIGTERM it records the time and exits at once (status 0), cutting anything still in flight,
so a stop signal that comes too early shows up as a broken response in the client.

--bind ADDR     listen on ADDR (default 127.0.0.1; ::1 for IPv6)
--terms N       exit on the N-th SIGTERM (default 1); earlier ones are only recorded, as an app
                that finishes its own work first would
--call PORT     at start, connect out to PORT, send a line and wait for an answer forever
SIGUSR2         close the listening socket (and keep running)
"""
import argparse
import os
import signal
import socket
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--events", required=True)
ap.add_argument("--call", type=int)
ap.add_argument("--bind", default="127.0.0.1")
ap.add_argument("--terms", type=int, default=1)
args = ap.parse_args()

# Reentrant: a signal handler (which writes an event) may run while the main thread is inside
# event() already, e.g. a SIGTERM handled while the SIGINT handler writes.
lock = threading.RLock()
events = open(args.events, "a", buffering=1)


def event(*words):
    with lock:
        events.write(" ".join(str(w) for w in words) + f" {time.monotonic():.6f}\n")
        events.flush()


terms = 0


def on_term(signum, frame):
    global terms
    terms += 1
    event("TERM")
    if terms >= args.terms:
        os._exit(0)


signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGUSR1, lambda signum, frame: event("USR1"))
# Recorded, not fatal: a SIGINT that ends a hold arrives right behind the held SIGTERM, and
# Python runs pending handlers lowest number first, so an INT that raised KeyboardInterrupt would
# pre-empt the TERM handler and leave the request threads running.
signal.signal(signal.SIGINT, lambda signum, frame: event("INT"))


def read_request(conn, buf):
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(4096)
        if not chunk:
            return None, b""
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    path = head.split(b"\r\n")[0].split(b" ")[1].decode()
    return path, rest


# Handled signals, blocked in every connection thread (which inherits the mask it is started
# with): CPython runs handlers only in the main thread, and a signal the kernel gives to a sleeping
# connection thread would not wake the main thread from accept(), so a SIGTERM could wait for the
# next connection.
HANDLED = {signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2}


def serve(conn):
    buf = b""
    with conn:
        while True:
            path, buf = read_request(conn, buf)
            if path is None:
                return
            event("request", path)
            parts = path.strip("/").split("/")
            if parts[0] == "slow":
                time.sleep(int(parts[1]) / 1000)
                body = b"slow answer\n"
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            elif parts[0] == "stream":
                n, every = int(parts[1]), int(parts[2])
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for i in range(n):
                    time.sleep(every / 1000)
                    data = b"chunk %d\n" % i
                    conn.sendall(b"%x\r\n%s\r\n" % (len(data), data))
                conn.sendall(b"0\r\n\r\n")
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
            event("answered", path)


listener = socket.socket(socket.AF_INET6 if ":" in args.bind else socket.AF_INET)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind((args.bind, args.port))
listener.listen(64)

if args.call:
    out = socket.create_connection(("127.0.0.1", args.call))
    out.sendall(b"are you there?\n")
    event("called", args.call)

def close_listener(signum, frame):
    listener.shutdown(socket.SHUT_RDWR)
    listener.close()
    event("closed-listener")


signal.signal(signal.SIGUSR2, close_listener)

event("listening")
while True:
    try:
        conn, _ = listener.accept()
    except OSError:
        # The listener was closed on purpose: keep the process (and its other sockets) alive.
        while True:
            time.sleep(3600)
    before = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
    signal.pthread_sigmask(signal.SIG_SETMASK, before)

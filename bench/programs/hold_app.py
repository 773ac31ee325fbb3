"""The app of bench/drain.py's figure 8 (drain detection latency), run under meshwait.

    python3 hold_app.py PORT DIR HOLD_MS

A one-connection-at-a-time HTTP/1.1 server on 127.0.0.1:PORT that holds each answer HOLD_MS ms.
It drops marker files in DIR, each holding a CLOCK_MONOTONIC reading: `listening`, `received`
(the request is in) and `sigterm` (in its SIGTERM handler, after which it exits 0 at once).
Keep-alive connections are reset (SO_LINGER 0) rather than left in TIME_WAIT, so that the next
run's app can bind the same port at once.
"""

import os, signal, socket, struct, sys, time
port, where, hold_ms = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])

def put(name, text):
    tmp = os.path.join(where, name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, text.encode())
    os.close(fd)
    os.rename(tmp, os.path.join(where, name))

def on_term(signum, frame):
    now = time.clock_gettime(time.CLOCK_MONOTONIC)
    put("sigterm", repr(now))
    os._exit(0)

signal.signal(signal.SIGTERM, on_term)
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(16)
put("listening", repr(time.clock_gettime(time.CLOCK_MONOTONIC)))
while True:
    conn, _ = srv.accept()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    buf = b""
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            break
        buf += chunk
        while b"\r\n\r\n" in buf:
            _, _, buf = buf.partition(b"\r\n\r\n")
            put("received", repr(time.clock_gettime(time.CLOCK_MONOTONIC)))
            time.sleep(hold_ms / 1000)
            body = b"held %d ms\n" % hold_ms
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    conn.close()

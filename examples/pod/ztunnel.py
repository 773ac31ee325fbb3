"""A stand-in for Istio's ztunnel serving a pod in ambient mode (in-pod redirection).

The real ztunnel is a node-level process that opens its listeners inside each enrolled pod's
network namespace; from the app's container they are sockets owned by root (UID 0) that no
process of the pod holds. This one runs as root in the pod's namespace and looks the same from
there:

- 15001 takes the app's outbound connections (istio-cni's rules redirect them) and connects to
  their original destination;
- 15006 takes inbound plaintext connections and connects to the app at their original
  destination (the real ztunnel keeps the caller's address as the source, with IP_TRANSPARENT;
  this one connects from the pod's own address);
- 15008 (HBONE) and 15053 (DNS) only listen;
- one long-lived tunnel to a peer's 15008 carries a keep-alive every half second, as ztunnel's
  pooled HBONE connections to other nodes do.

Its own connections carry the mark 0x539 (SO_MARK), which the capture rules exempt, as
ztunnel's do. Relaying is plain byte copying: HBONE's HTTP/2 CONNECT and mTLS are not modelled,
since the app's container sees only the sockets.

    ztunnel.py --peer HOST:PORT        in the pod
    ztunnel.py --as-peer HOST:PORT     a peer's HBONE listener, in the cluster: reads and holds
"""

import argparse
import socket
import struct
import threading
import time

MARK = 0x539
SO_ORIGINAL_DST = 80


def log(msg):
    print(f"ztunnel: {time.time():.3f} {msg}", flush=True)


def original_destination(conn):
    raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, packed = struct.unpack("!2xH4s8x", raw)
    return socket.inet_ntoa(packed), port


def marked_connection(host, port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, MARK)
    s.connect((host, port))
    return s


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        # One side was reset: reset the other too (SO_LINGER 0), as ztunnel does.
        try:
            dst.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        dst.close()


def relay(conn, what):
    host, port = original_destination(conn)
    try:
        upstream = marked_connection(host, port)
    except OSError as e:
        # Nothing to hand the connection to (the app closed its listener): the caller is reset,
        # which an HTTP client sees as a failed request.
        log(f"{what} to {host}:{port} failed: {e}")
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        return
    threads = [threading.Thread(target=pump, args=(conn, upstream), daemon=True),
               threading.Thread(target=pump, args=(upstream, conn), daemon=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conn.close()
    upstream.close()


def drain_forever(conn):
    while conn.recv(65536):
        pass


def listen(port, what, serve, host="0.0.0.0"):
    # IPv4 only, like the capture rules here; the original destination is read with SOL_IP.
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(64)

    def accept():
        while True:
            conn, _ = srv.accept()
            target = relay if serve else (lambda c, _what: drain_forever(c))
            threading.Thread(target=target, args=(conn, what), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def tunnel(peer):
    host, _, port = peer.rpartition(":")
    s = marked_connection(host, int(port))
    while True:
        s.sendall(b"\0")
        time.sleep(0.5)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer", help="a peer ztunnel's HBONE address, host:port")
    ap.add_argument("--as-peer", help="be that peer's HBONE listener on host:port")
    args = ap.parse_args()
    if args.as_peer:
        host, _, port = args.as_peer.rpartition(":")
        listen(int(port), "HBONE", serve=False, host=host)
        log(f"peer listening on {args.as_peer}")
        while True:
            time.sleep(3600)
    listen(15001, "outbound", serve=True)
    listen(15006, "inbound", serve=True)
    listen(15008, "HBONE", serve=False)
    listen(15053, "DNS", serve=False)
    threading.Thread(target=tunnel, args=(args.peer,), daemon=True).start()
    log("listening on 15001, 15006, 15008, 15053")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()

"""A slow DNS server for the pod: the cluster's DNS when it is overloaded or far away.

usage: dns.py --listen ADDR --delay SECONDS NAME...

Answers every query after SECONDS, each on its own timer: an A query for one of the NAMEs with
127.0.0.1 (the sidecar shares the pod's loopback), an AAAA query for one of them with no record,
anything else with NXDOMAIN. Prints "listening" once bound, and one line per answer.
"""

import argparse
import socket
import struct
import threading
import time

A, AAAA = 1, 28


def question(packet):
    """(name, type, the question's bytes) of a query, or None when it is not one."""
    if len(packet) < 12 or packet[2] & 0x80:
        return None
    labels, at = [], 12
    while at < len(packet) and packet[at]:
        size = packet[at]
        labels.append(packet[at + 1:at + 1 + size].decode("ascii", "replace"))
        at += 1 + size
    end = at + 5
    if end > len(packet):
        return None
    qtype, = struct.unpack("!H", packet[at + 1:at + 3])
    return ".".join(labels).lower(), qtype, packet[12:end]


def answer(packet, names):
    asked = question(packet)
    if asked is None:
        return None, None
    name, qtype, q = asked
    known = name in names
    records = b""
    if known and qtype == A:
        # A pointer to the question's name, type A, class IN, TTL 5, 4 bytes of address.
        records = struct.pack("!HHHIH", 0xC00C, A, 1, 5, 4) + socket.inet_aton("127.0.0.1")
    flags = 0x8180 if known else 0x8183  # response, recursion desired and available; NXDOMAIN
    header = packet[:2] + struct.pack("!HHHHH", flags, 1, 1 if records else 0, 0, 0)
    return header + q + records, f"{name} {'A' if qtype == A else qtype}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--delay", type=float, required=True)
    ap.add_argument("names", nargs="+")
    args = ap.parse_args()
    names = {n.lower() for n in args.names}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.listen, 53))
    print("listening", flush=True)
    started = time.monotonic()

    def reply(data, peer, what):
        sock.sendto(data, peer)
        print(f"dns: {time.monotonic() - started:.2f} answered {what}", flush=True)

    while True:
        packet, peer = sock.recvfrom(512)
        data, what = answer(packet, names)
        if data:
            threading.Timer(args.delay, reply, args=(data, peer, what)).start()


if __name__ == "__main__":
    main()

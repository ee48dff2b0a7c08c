#!/usr/bin/env python3
"""Malformed DNS traffic for scripts/soak: random bytes, truncated headers, bad OPT records,
compression loops and broken TCP framing, over UDP and TCP, at about RATE packets a second
(default 1000) for SECONDS. Replies are read and thrown away. Fixed seed: every run sends the
same traffic.

Usage: soak-malformed.py HOST PORT SECONDS [RATE]
"""
import random
import socket
import struct
import sys
import time

host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rate = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
rng = random.Random(8482)


def name(labels):
    return b"".join(bytes([len(l)]) + l for l in labels) + b"\0"


def query(qid, qname=b"h1.soak.test", qtype=1, arcount=0, extra=b""):
    labels = qname.split(b".")
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, arcount) + name(labels) + struct.pack(">HH", qtype, 1) + extra


def opt(udp=1232, ext_rcode=0, version=0, flags=0, rdata=b"", rdlen=None):
    rdlen = len(rdata) if rdlen is None else rdlen
    return b"\0" + struct.pack(">HHBBHH", 41, udp, ext_rcode, version, flags, rdlen) + rdata


def malformed():
    qid = rng.randrange(65536)
    kind = rng.randrange(14)
    if kind == 0:  # random bytes
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 600)))
    if kind == 1:  # a header cut short
        return query(qid)[: rng.randrange(0, 12)]
    if kind == 2:  # a question cut short
        q = query(qid)
        return q[: rng.randrange(12, len(q))]
    if kind == 3:  # OPT whose length runs past the end
        return query(qid, arcount=1, extra=opt(rdata=b"\0\x0a\0\x08abc", rdlen=200))
    if kind == 4:  # EDNS version 1 (BADVERS)
        return query(qid, arcount=1, extra=opt(version=1))
    if kind == 5:  # two OPT records
        return query(qid, arcount=2, extra=opt() + opt())
    if kind == 6:  # an option whose length is larger than the OPT's
        return query(qid, arcount=1, extra=opt(rdata=struct.pack(">HH", 10, 40) + b"x" * 8))
    if kind == 7:  # a compression pointer to itself
        return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c" + struct.pack(">HH", 1, 1)
    if kind == 8:  # counts that promise more than there is
        q = bytearray(query(qid))
        q[4:12] = struct.pack(">HHHH", rng.randrange(2, 65536), rng.randrange(65536), rng.randrange(65536), rng.randrange(65536))
        return bytes(q)
    if kind == 9:  # a response, not a query
        q = bytearray(query(qid))
        q[2] |= 0x80
        return bytes(q)
    if kind == 10:  # an odd opcode, class and type
        q = bytearray(query(qid, qtype=rng.choice([0, 255, 251, 252, 65535])))
        q[2] = (q[2] & 0x87) | (rng.randrange(16) << 3)
        return bytes(q)
    if kind == 11:  # a label longer than 63
        return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + b"\x50" + b"a" * 80 + b"\0" + struct.pack(">HH", 1, 1)
    if kind == 12:  # a valid query with random bits flipped
        q = bytearray(query(qid, arcount=1, extra=opt(udp=rng.randrange(65536))))
        for _ in range(rng.randrange(1, 4)):
            q[rng.randrange(len(q))] ^= 1 << rng.randrange(8)
        return bytes(q)
    # a name of 255+ bytes
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + b"\x3f" + (b"a" * 63 + b"\x3f") * 4 + b"a" * 63 + b"\0" + struct.pack(">HH", 1, 1)


def tcp_abuse():
    """One TCP connection with broken framing, closed after a moment."""
    try:
        s = socket.create_connection((host, port), timeout=1)
    except OSError:
        return 0
    try:
        kind = rng.randrange(4)
        if kind == 0:  # framed garbage, pipelined
            s.sendall(b"".join(struct.pack(">H", len(m)) + m for m in (malformed() for _ in range(5))))
        elif kind == 1:  # a length promising more than is sent
            s.sendall(struct.pack(">H", 512) + query(rng.randrange(65536)))
        elif kind == 2:  # half a length
            s.sendall(b"\0")
        else:  # a zero length, then a valid query
            q = query(rng.randrange(65536))
            s.sendall(b"\0\0" + struct.pack(">H", len(q)) + q)
        s.settimeout(0.05)
        try:
            s.recv(4096)
        except OSError:
            pass
    except OSError:
        pass
    finally:
        s.close()
    return 1


udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.setblocking(False)
end = time.monotonic() + seconds
sent_udp = sent_tcp = 0
tick = 0.01
per_tick = max(1, rate // 100)
while time.monotonic() < end:
    t0 = time.monotonic()
    for _ in range(per_tick):
        try:
            udp.sendto(malformed(), (host, port))
            sent_udp += 1
        except OSError:
            pass
    while True:
        try:
            udp.recv(4096)
        except OSError:
            break
    # A broken TCP connection every 10 ticks (10 a second).
    if int(t0 / tick) % 10 == 0:
        sent_tcp += tcp_abuse()
    left = tick - (time.monotonic() - t0)
    if left > 0:
        time.sleep(left)
print(f"{sent_udp} UDP packets, {sent_tcp} TCP connections")

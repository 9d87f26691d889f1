"""Tiny traffic probes to run inside topology hosts with ``topo.call``/``topo.start``.

Servers handle a fixed number of exchanges and return what they saw (peer
addresses, the TTL / hop limit a datagram arrived with), so a test can check
both ends.  Clients retry while the server is not listening yet, so a test can
start the server and the client at the same moment.

    srv = topo.start("server", serve_udp_echo, "198.51.100.2", 7000)
    reply, peer = topo.call("client", udp_exchange, "198.51.100.2", 7000, b"hi")
    [(client_addr, ttl)] = srv.result(timeout=5)        # ttl 63: one router passed
"""
from __future__ import annotations

import ipaddress
import socket
import struct
import time

# Linux values; Python's socket module lacks some of them before 3.12.
IP_TTL, IP_RECVTTL = 2, 12
IPV6_RECVHOPLIMIT, IPV6_HOPLIMIT = 51, 52


def _family(addr: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(addr).version == 6 else socket.AF_INET


def serve_tcp_echo(addr: str, port: int, conns: int = 1, timeout: float = 10.0) -> list:
    """Accept *conns* connections on addr:port, echo each until EOF; return the peers."""
    fam = _family(addr)
    peers = []
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(conns)
        s.settimeout(timeout)
        for _ in range(conns):
            c, peer = s.accept()
            with c:
                c.settimeout(timeout)
                while True:
                    data = c.recv(65536)
                    if not data:
                        break
                    c.sendall(data)
            peers.append(peer[0])
    return peers


def tcp_exchange(addr: str, port: int, payload: bytes, timeout: float = 10.0) -> bytes:
    """Connect (retrying while refused), send *payload*, half-close, return all received."""
    fam = _family(addr)
    deadline = time.monotonic() + timeout
    while True:
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            s.connect((addr, port))
            break
        except (TimeoutError, ConnectionRefusedError, OSError):
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    with s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        out = bytearray()
        while True:
            data = s.recv(65536)
            if not data:
                return bytes(out)
            out += data


def serve_udp_echo(addr: str, port: int, count: int = 1, timeout: float = 10.0) -> list:
    """Echo *count* datagrams on addr:port; return [(peer address, arrival TTL/hop limit)]."""
    fam = _family(addr)
    seen = []
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        if fam == socket.AF_INET:
            s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        else:
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
        s.bind((addr, port))
        s.settimeout(timeout)
        while len(seen) < count:
            data, anc, _, peer = s.recvmsg(65536, socket.CMSG_SPACE(4))
            ttl = None
            for level, kind, cdata in anc:
                if (level, kind) in ((socket.IPPROTO_IP, IP_TTL),
                                     (socket.IPPROTO_IPV6, IPV6_HOPLIMIT)):
                    ttl = struct.unpack("i", cdata[:4])[0] if len(cdata) >= 4 else cdata[0]
            try:
                s.sendto(data, peer)
            except OSError:     # no route back (e.g. NAT missing): still report the arrival
                pass
            seen.append((peer[0], ttl))
    return seen


def udp_exchange(addr: str, port: int, payload: bytes, timeout: float = 5.0,
                 interval: float = 0.1) -> tuple[bytes, str]:
    """Send *payload* until an echo comes back (or *timeout*); return (reply, replier)."""
    fam = _family(addr)
    deadline = time.monotonic() + timeout
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        while True:
            try:
                s.sendto(payload, (addr, port))
            except OSError:     # e.g. a pending ICMP error from an earlier try
                pass
            s.settimeout(max(0.01, min(interval, deadline - time.monotonic())))
            try:
                data, peer = s.recvfrom(65536)
                return data, peer[0]
            except (TimeoutError, ConnectionRefusedError, OSError):
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"no UDP echo from [{addr}]:{port} within "
                                       f"{timeout} s") from None


def capture(ifname: str, count: int = 1, timeout: float = 5.0, udp_dport: int | None = None,
            ready_file: str | None = None) -> list[bytes]:
    """Capture *count* frames arriving on *ifname* (AF_PACKET, as the stack received them).

    With *udp_dport*, only IPv4/IPv6 UDP frames to that port count.  When
    *ready_file* is given it is created once the socket is bound, so a sender can
    wait for it.  Frames are returned whole, starting at the Ethernet header.
    """
    ETH_P_ALL = 0x0003
    frames: list[bytes] = []
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as s:
        s.bind((ifname, 0))
        if ready_file:
            open(ready_file, "w").close()
        while len(frames) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"captured {len(frames)} of {count} frames on {ifname}")
            s.settimeout(left)
            frame, addr = s.recvfrom(65600)
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            if udp_dport is not None and _udp_dport(frame) != udp_dport:
                continue
            frames.append(frame)
    return frames


def _udp_dport(frame: bytes) -> int | None:
    if len(frame) < 14:
        return None
    etype = int.from_bytes(frame[12:14], "big")
    if etype == 0x0800 and len(frame) >= 34 and frame[23] == 17:
        off = 14 + (frame[14] & 0x0F) * 4
    elif etype == 0x86DD and len(frame) >= 54 and frame[20] == 17:
        off = 54
    else:
        return None
    return int.from_bytes(frame[off + 2:off + 4], "big") if len(frame) >= off + 4 else None


# --- counted streams: every datagram numbered, so a test can say which ones were lost ------

SO_RCVBUFFORCE = 33


def udp_stream(addr: str, ports: list[int], stop_file: str, rate: int = 5000,
               size: int = 64, max_seconds: float = 120.0) -> dict[int, int]:
    """Send numbered datagrams to *addr* at *rate* per second until *stop_file* exists.

    Datagram *n* (an 8-byte big-endian sequence number, padded to *size*) goes to
    ``ports[n % len(ports)]``.  Returns how many were sent to each port; the
    receiver (``udp_sink``) then knows exactly which numbers it should have seen."""
    import os
    fam = _family(addr)
    sent = dict.fromkeys(ports, 0)
    pad = bytes(max(0, size - 8))
    burst = max(1, rate // 1000)            # one burst per millisecond
    start = time.monotonic()
    n = 0
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
        while True:
            if n % (burst * 50) == 0 and (os.path.exists(stop_file) or
                                          time.monotonic() - start > max_seconds):
                break
            for _ in range(burst):
                port = ports[n % len(ports)]
                while True:
                    try:
                        s.sendto(n.to_bytes(8, "big") + pad, (addr, port))
                        break
                    except (BlockingIOError, ConnectionRefusedError):
                        continue     # a full queue or a stale ICMP error: send it again
                sent[port] += 1
                n += 1
            ahead = start + n / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    return sent


def udp_sink(addr: str, ports: list[int], ready_file: str, stop_file: str,
             idle: float = 1.0, max_seconds: float = 180.0) -> dict[int, list[int]]:
    """Receive numbered datagrams on each of *ports*; return the sequence numbers seen per
    port.  Creates *ready_file* once bound; ends *idle* seconds after the last datagram
    once *stop_file* exists.  Receive buffers are forced large, so the socket itself
    does not drop what a paced sender sends."""
    import os
    import select
    fam = _family(addr)
    socks, seen = {}, {p: [] for p in ports}
    try:
        for p in ports:
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 25)
            s.bind((addr, p))
            s.setblocking(False)
            socks[s.fileno()] = (s, p)
        open(ready_file, "w").close()
        start = last = time.monotonic()
        while time.monotonic() - start < max_seconds:
            ready, _, _ = select.select(list(socks), [], [], 0.1)
            for fd in ready:
                s, p = socks[fd]
                while True:
                    try:
                        data = s.recv(2048)
                    except BlockingIOError:
                        break
                    seen[p].append(int.from_bytes(data[:8], "big"))
                last = time.monotonic()
            if os.path.exists(stop_file) and time.monotonic() - last > idle:
                break
    finally:
        for s, _p in socks.values():
            s.close()
    return seen


# --- what `nfpipe test` end-to-end cases send: one exchange each, reported, never raised ---

def serve_udp_count(addr: str, port: int, ready_file: str, window: float = 2.0) -> list[str]:
    """Receive datagrams on addr:port for *window* seconds after *ready_file* is created
    (once bound) or after the last one came; return the peer address of each."""
    fam = _family(addr)
    peers: list[str] = []
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.bind((addr, port))
        open(ready_file, "w").close()
        while True:
            s.settimeout(window)
            try:
                _data, peer = s.recvfrom(65536)
            except TimeoutError:
                return peers
            peers.append(peer[0])


def udp_send(addr: str, port: int, payload: bytes, count: int, interval: float = 0.02) -> int:
    """Send *count* datagrams to addr:port, *interval* apart; return how many left."""
    sent = 0
    with socket.socket(_family(addr), socket.SOCK_DGRAM) as s:
        for _ in range(count):
            try:
                s.sendto(payload, (addr, port))
                sent += 1
            except OSError:         # a pending ICMP error of an earlier datagram
                pass
            time.sleep(interval)
    return sent


def serve_http(addr: str, port: int, body: bytes, timeout: float = 10.0) -> list:
    """Answer one HTTP request on addr:port with 200 and *body*; return [(peer, path)]."""
    with socket.socket(_family(addr), socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(1)
        s.settimeout(timeout)
        c, peer = s.accept()
        with c:
            c.settimeout(timeout)
            head = bytearray()
            while b"\r\n\r\n" not in head and len(head) < 65536:
                data = c.recv(4096)
                if not data:
                    break
                head += data
            parts = bytes(head).split(b"\r\n", 1)[0].split()
            path = parts[1].decode(errors="replace") if len(parts) > 1 else ""
            c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d"
                      b"\r\nConnection: close\r\n\r\n%s" % (len(body), body))
    return [(peer[0], path)]


def http_get(addr: str, port: int, path: str = "/", timeout: float = 10.0
             ) -> tuple[int, bytes]:
    """GET *path* from addr:port over HTTP/1.0 (connecting again while refused until
    *timeout*); return (status code, body)."""
    host = f"[{addr}]" if ":" in addr else addr
    request = f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode()
    raw = tcp_exchange(addr, port, request, timeout)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or not status[1].isdigit():
        raise ConnectionError(f"not an HTTP response from [{addr}]:{port}: {raw[:60]!r}")
    return int(status[1]), body


def _icmp_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ping(addr: str, count: int = 3, timeout: float = 1.0, interval: float = 0.05) -> int:
    """Send *count* ICMP (ICMPv6) echo requests to *addr* over a raw socket, each waiting
    up to *timeout* for its reply; return how many replies came back."""
    import os
    v6 = _family(addr) == socket.AF_INET6
    ident = os.getpid() & 0xFFFF
    req, rep = (128, 129) if v6 else (8, 0)
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    replies = 0
    with socket.socket(_family(addr), socket.SOCK_RAW, proto) as s:
        for seq in range(count):
            payload = b"nfpipe-ping-%04d" % seq
            msg = struct.pack("!BBHHH", req, 0, 0, ident, seq) + payload
            if not v6:              # the kernel fills in ICMPv6's (it covers a pseudo-header)
                msg = msg[:2] + struct.pack("!H", _icmp_checksum(msg)) + msg[4:]
            s.sendto(msg, (addr, 0))
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                s.settimeout(left)
                try:
                    data = s.recv(65536)
                except TimeoutError:
                    break
                icmp = data if v6 else data[(data[0] & 0x0F) * 4:]
                if len(icmp) >= 8 and icmp[0] == rep and \
                        struct.unpack("!HH", icmp[4:8]) == (ident, seq):
                    replies += 1
                    break
            time.sleep(interval)
    return replies

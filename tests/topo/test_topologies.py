"""Each shipped topology, brought up for real, carries real traffic through the DUT."""
from __future__ import annotations

import socket
import sys
import textwrap
import time

import pytest
from topo_common import TOPOLOGIES

from nfpipe.topo import namespaces as nsu
from nfpipe.topo.traffic import serve_tcp_echo, serve_udp_echo, tcp_exchange, udp_exchange

pytestmark = pytest.mark.kernel


def read_sysctl(key: str) -> str:
    with open("/proc/sys/" + key.replace(".", "/")) as f:
        return f.read().strip()


def offload_state(ifname: str) -> dict:
    from pyroute2.ethtool import Ethtool
    with Ethtool() as e:
        f = e.get_features(ifname).features
        return {n: f[n].enable for n in ("tx-checksum-ip-generic", "tx-tcp-segmentation",
                                         "tx-tcp6-segmentation", "tx-generic-segmentation",
                                         "rx-gro")}


def check_applied(topo) -> None:
    """Namespaces, addresses, MTU, sysctls and offloads are what the file says."""
    status = topo.status()
    assert status["up"]
    for host, hspec in topo.spec.hosts.items():
        entry = status["hosts"][host]
        assert entry["exists"] and entry["netns"] == topo.netns(host)
        for ifn, ispec in hspec.interfaces.items():
            i = entry["interfaces"][ifn]
            assert i["state"] == "UP"
            assert i["ifindex"] == topo.ifindex(host, ifn)
            assert sorted(i["addresses"]) == sorted(str(a) for a in ispec.addresses)
            assert i["mtu"] == (topo.spec.mtu_of(host, ifn) or 1500)
            assert not any(topo.call(host, offload_state, ifn).values())
        for key, value in hspec.sysctls.items():
            assert topo.call(host, read_sysctl, key) == value
    for h, i in topo.dut:
        assert nsu.ns_exists(topo.netns(h)) and topo.ifindex(h, i) > 1


def udp_roundtrip(topo, src, dst, dst_iface, port, version):
    addr = topo.address(dst, dst_iface, version)
    server = topo.start(dst, serve_udp_echo, addr, port)
    reply, peer = topo.call(src, udp_exchange, addr, port, b"ping-%d" % version, timeout=5)
    seen = server.result(timeout=5)
    assert reply == b"ping-%d" % version and peer == addr
    return seen[0]


def test_two_hosts_routed_traffic(topo_factory):
    topo = topo_factory(TOPOLOGIES / "two-hosts.yaml").up()
    check_applied(topo)
    idx_before = {(h, i): topo.ifindex(h, i) for h, i in topo.dut}
    topo.up()                                       # idempotent: nothing recreated
    assert {(h, i): topo.ifindex(h, i) for h, i in topo.dut} == idx_before
    client_ip = topo.address("client", "eth0")
    server_ip = topo.address("server", "eth0")
    # TCP across the routed DUT: server via a forked callable, client via another
    server = topo.start("server", serve_tcp_echo, server_ip, 8080)
    payload = bytes(range(256)) * 64
    assert topo.call("client", tcp_exchange, server_ip, 8080, payload) == payload
    assert server.result(timeout=5) == [client_ip]
    # UDP echo over IPv4 and IPv6: one router hop (TTL / hop limit 64 -> 63)
    for v in (4, 6):
        peer, ttl = udp_roundtrip(topo, "client", "server", "eth0", 7000 + v, v)
        assert peer == topo.address("client", "eth0", v)
        assert ttl == 63, f"IPv{v} arrived with TTL {ttl}: not routed by the DUT"
    # a plain command in a namespace: a TCP server as a separate process (popen)
    code = ("import socket,sys; s=socket.socket(socket.AF_INET6); s.bind(('2001:db8:2::2',9090));"
            "s.listen(1); print('ready',flush=True); c,p=s.accept(); c.sendall(p[0].encode());"
            "c.close()")
    proc = topo.popen("server", [sys.executable, "-c", code], stdout=-1, text=True)
    assert proc.stdout.readline().strip() == "ready"
    got = topo.call("client", tcp_exchange, "2001:db8:2::2", 9090, b"")
    assert got == b"2001:db8:1::2"
    assert proc.wait(timeout=5) == 0
    home = {n for _, n in socket.if_nameindex()}
    with topo.inside("dut"):        # this thread only, and back afterwards
        assert sorted(n for _, n in socket.if_nameindex()) == ["eth0", "eth1", "lo"]
        assert socket.if_nametoindex("eth1") == topo.ifindex("dut", "eth1")
    assert {n for _, n in socket.if_nameindex()} == home
    out = topo.run("dut", [sys.executable, "-c", "import socket; print(socket.if_nameindex())"],
                   capture_output=True, text=True, check=True).stdout
    assert "'eth0'" in out and "'eth1'" in out
    names = set(topo.namespaces.values())
    topo.down()
    assert not names & set(nsu.list_namespaces())
    assert nsu.read_state(topo.name, topo.run_id) is None


def test_lb_clients_reach_backends_through_dut(topo_factory):
    topo = topo_factory(TOPOLOGIES / "lb.yaml").up()
    check_applied(topo)
    assert set(topo.status()["bridges"]) == {"front", "back"}
    port = 7100
    for client in ("client1", "client2"):
        for backend in ("backend1", "backend2", "backend3"):
            for v in (4, 6):
                port += 1
                peer, ttl = udp_roundtrip(topo, client, backend, "eth0", port, v)
                assert peer == topo.address(client, "eth0", v) and ttl == 63
    server = topo.start("backend3", serve_tcp_echo, "10.1.0.13", 8080)
    assert topo.call("client1", tcp_exchange, "10.1.0.13", 8080, b"x" * 100_000) == b"x" * 100_000
    assert server.result(timeout=5) == ["192.0.2.11"]
    topo.down()


def test_nat_needs_translation(topo_factory):
    topo = topo_factory(TOPOLOGIES / "nat.yaml").up()
    check_applied(topo)
    # each side reaches the DUT
    for host, dut_if, v in (("inside", "eth0", 4), ("outside", "eth1", 4), ("outside", "eth1", 6)):
        peer, ttl = udp_roundtrip(topo, host, "dut", dut_if, 7200 + v, v)
        assert ttl == 64                    # no router in between
    # the private host's packets reach the public host, but replies have no way back
    outside = topo.address("outside", "eth0")
    server = topo.start("outside", serve_udp_echo, outside, 7300)
    with pytest.raises(TimeoutError):
        topo.call("inside", udp_exchange, outside, 7300, b"hello", timeout=0.6)
    assert server.result(timeout=5) == [("10.0.0.2", 63)]
    topo.down()


def udp_checksum_ok(frame: bytes) -> bool:
    from scapy.layers.inet import UDP
    from scapy.layers.l2 import Ether
    pkt = Ether(frame)
    udp = pkt[UDP]
    sent = udp.chksum
    del udp.chksum
    return Ether(bytes(pkt))[UDP].chksum == sent


def send_udp_train(addr, port, n=40, interval=0.025):
    import socket as s_
    fam = s_.AF_INET6 if ":" in addr else s_.AF_INET
    with s_.socket(fam, s_.SOCK_DGRAM) as s:
        for _ in range(n):
            s.sendto(b"checksum me" * 10, (addr, port))
            time.sleep(interval)


def capture_when_ready(topo, host, ifname, port, tmp_path):
    from nfpipe.topo.traffic import capture
    ready = tmp_path / f"ready-{host}-{ifname}-{port}"
    cap = topo.start(host, capture, ifname, 1, 5.0, port, str(ready))
    deadline = time.monotonic() + 5
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return cap


def test_dut_sees_complete_checksums_only_with_offloads_off(topo_factory, tmp_path):
    topo = topo_factory(TOPOLOGIES / "two-hosts.yaml").up()
    results = {}
    for v in (4, 6):
        cap = capture_when_ready(topo, "dut", "eth0", 7700 + v, tmp_path)
        topo.call("client", send_udp_train, topo.address("server", "eth0", v), 7700 + v, 5)
        [frame] = cap.result(timeout=6)
        results[v] = udp_checksum_ok(frame)
    assert results == {4: True, 6: True}
    # the same with offloads left on: the frame carries only a partial checksum
    on = topo_factory(textwrap.dedent("""\
        topology: offload-on
        hosts:
          a: {interfaces: {eth0: {addresses: [10.0.0.1/24]}}}
          b: {interfaces: {eth0: {addresses: [10.0.0.2/24]}}}
        links:
          - {endpoints: [a:eth0, b:eth0], offload: true}
        """), text=True).up()
    cap = capture_when_ready(on, "b", "eth0", 7710, tmp_path)
    on.call("a", send_udp_train, "10.0.0.2", 7710, 5)
    [frame] = cap.result(timeout=6)
    assert not udp_checksum_ok(frame)


def scapy_send(dst_mac: str, dst_ip: str, port: int) -> str:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.sendrecv import sendp
    pkt = Ether(dst=dst_mac) / IP(dst=dst_ip, ttl=9) / UDP(sport=4242, dport=port) / b"scapy"
    for _ in range(10):
        sendp(pkt, iface="eth0", verbose=False)
        time.sleep(0.05)
    return pkt[IP].src


def test_scapy_in_a_namespace(topo_factory):
    import scapy.all
    assert scapy.all.conf.ifaces is not None
    topo = topo_factory(TOPOLOGIES / "two-hosts.yaml").up()
    dut_mac = topo.status()["hosts"]["dut"]["interfaces"]["eth0"]["mac"]
    server = topo.start("server", serve_udp_echo, "198.51.100.2", 7800)
    src = topo.call("client", scapy_send, dut_mac, "198.51.100.2", 7800)
    assert src == "192.0.2.2"          # scapy picked the namespace's route, not the host's
    assert server.result(timeout=5) == [("192.0.2.2", 8)]

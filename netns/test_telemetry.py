"""telemetry (two-hosts): the telemetry NF on dut:eth0 counts exactly what the client
sent, and its samples, written by nfpipe as a pcap file, open in scapy.

* N real TCP connections (HTTP to the server's port 8080): the SYN count of the
  client's address is N; each connection's flow entry has as many packets and
  bytes as the client's eth0 sent on it (AF_PACKET capture in the client);
* scapy SYNs from three spoofed sources (sent in the client namespace, sniffed with
  scapy in the server namespace): SYN counts per source equal the numbers sent;
* sample_rate 1: every frame is sampled; the pcap holds one record per sampled
  frame, and the client's TCP frames appear in it byte for byte (up to snaplen).
"""
from __future__ import annotations

import shutil
import subprocess

from netns.conftest import scenario_fixture
from netns.harness import capturing, link_mac
from nfpipe.catalog.telemetry import Telemetry

scenario = scenario_fixture("two-hosts")

SERVER, CLIENT = "198.51.100.2", "192.0.2.2"
N_CONN = 12
SPOOFED = {"192.0.2.101": 3, "192.0.2.102": 5, "192.0.2.103": 1}
SNAP = 128


def _tcp(frame: bytes):
    """(src, dst, sport, dport) of an IPv4 TCP frame, else None."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
        return None
    off = 14 + (frame[14] & 0x0F) * 4
    src = ".".join(map(str, frame[26:30]))
    dst = ".".join(map(str, frame[30:34]))
    return src, dst, int.from_bytes(frame[off:off + 2], "big"), \
        int.from_bytes(frame[off + 2:off + 4], "big")


def test_telemetry(scenario, mode, tmp_path):
    from scapy.all import IP, TCP, Ether, rdpcap
    sc = scenario
    if not getattr(sc, "_tlm_server", False):
        sc.http_server("server", SERVER, 8080)
        sc._tlm_server = True
    cmac = link_mac(sc, "client", "eth0")
    dmac = link_mac(sc, "dut", "eth0")

    with sc.deploy("telemetry.yaml", mode, ["eth0"]) as dep:
        nf, maps = dep.impl("tlm"), dep.node_maps("tlm")
        with capturing(sc, "client", "eth0", "out", tmp_path) as cap:
            answers = sc.http_many("client", SERVER, 8080, N_CONN)
            assert len({a["port"] for a in answers}) == N_CONN     # N distinct connections
            # crafted SYNs from spoofed sources, seen arriving at the server
            frames, sport = [], 40000
            for src, n in SPOOFED.items():
                for _ in range(n):
                    sport += 1
                    frames.append(bytes(Ether(src=cmac, dst=dmac) / IP(src=src, dst=SERVER) /
                                        TCP(sport=sport, dport=9, flags="S", seq=1000)))
            sniffed = sc.send_and_sniff("client", frames, "server", duration=0.8,
                                        ip_proto=6, dport=9, tmpdir=tmp_path)
        sent = cap[0]
        dep.detach()          # counters are final from here on (no more packets)

        got = [IP(Ether(f)[IP].build()) for f in sniffed]
        assert sorted(p[TCP].sport for p in got) == list(range(40001, sport + 1)), \
            f"crafted SYNs did not all cross the DUT ({mode})"
        assert all(p.ttl == 63 for p in got)                        # routed by the DUT

        # SYN count per source == what was sent: one per connection, plus any SYN the
        # client's kernel retransmitted (seen in the capture; none in a normal run)
        client_syns = [f for f in sent if _tcp(f) and _tcp(f)[0] == CLIENT
                       and f[14 + (f[14] & 0x0F) * 4 + 13] & 0x12 == 0x02]
        assert len({_tcp(f)[2] for f in client_syns}) == N_CONN
        syns = {str(k): v for k, v in Telemetry.syn_sources(maps).items()}
        assert syns == {CLIENT: len(client_syns), **SPOOFED}, (mode, syns)
        if len(client_syns) != N_CONN:
            print(f"[{mode}] {len(client_syns) - N_CONN} SYN retransmission(s) seen")

        # flow counters: per connection, exactly the frames the client sent on it
        flows = Telemetry.flows(maps)
        for a in answers:
            key = next(k for k in flows if str(k.src) == CLIENT and k.sport == a["port"]
                       and k.dport == 8080)
            mine = [f for f in sent if _tcp(f) == (CLIENT, SERVER, a["port"], 8080)]
            assert flows[key]["packets"] == len(mine), (mode, key, flows[key], len(mine))
            assert flows[key]["bytes"] == sum(map(len, mine))
        for src, n in SPOOFED.items():
            fl = [v for k, v in flows.items() if str(k.src) == src]
            assert len(fl) == n and all(v["packets"] == 1 for v in fl)

        counters = Telemetry.counters(maps)
        assert counters["sampled"] == counters["packets"] >= len(sent)
        assert counters["ringbuf_full"] == counters["malformed"] == 0
        assert dep.pipeline.edge_counts()["tlm.out -> pass"] == counters["packets"]

        # the pcap: every sample, the client's TCP frames byte for byte
        pcap = tmp_path / f"samples-{mode}.pcap"
        assert nf.write_pcap(maps, pcap) == counters["sampled"]
        pkts = rdpcap(str(pcap))
        assert len(pkts) == counters["sampled"]
        in_pcap = [bytes(p) for p in pkts]
        tcp_sent = [f[:SNAP] for f in sent if _tcp(f) and _tcp(f)[:2] == (CLIENT, SERVER)]
        tcp_pcap = [f for f in in_pcap if _tcp(f) and _tcp(f)[1] == SERVER
                    and _tcp(f)[0] == CLIENT]
        # as multisets: frames sent from different CPUs may reach the DUT's hook in
        # another order than the client's capture saw them leave
        assert sorted(tcp_pcap) == sorted(tcp_sent), f"pcap and capture differ ({mode})"
        assert sum(1 for f in in_pcap if (t := _tcp(f)) and t[0] in SPOOFED) == \
            sum(SPOOFED.values())
        assert all(p.wirelen >= len(p) for p in pkts)
        if shutil.which("tcpdump"):
            r = subprocess.run(["tcpdump", "-nr", str(pcap)], capture_output=True, text=True)
            assert r.returncode == 0 and len(r.stdout.splitlines()) == len(pkts)

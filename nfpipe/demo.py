"""``nfpipe demo``: the main job, end to end, on a topology the demo builds itself.

1. brings up ``topologies/two-hosts.yaml`` (client — DUT — server, in network
   namespaces of its own, under a fresh run id);
2. deploys ``examples/firewall.yaml`` (the seeds' rules: drop all UDP, drop TCP
   to 80 and 443; then telemetry) at XDP on the DUT's client-side interface;
3. sends real traffic from the client: a TCP exchange on an allowed port, a
   TCP connection to port 80 and UDP datagrams, and reports what got through;
4. prints ``nfpipe status`` and ``nfpipe stats``, the SYN counts per source
   from the telemetry node;
5. destroys the pipeline and the topology, also when something failed.

``nfpipe demo --loader`` runs the smaller foundation demo instead: compile an
XDP program, load it with nfpipe's own loader, run scapy packets through it
with BPF_PROG_TEST_RUN and print the verdicts and maps.
"""
from __future__ import annotations

import json
import socket
import sys
import tempfile
import uuid

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from nfpipe import deploy as D, resources
from nfpipe.attach import Target
from nfpipe.catalog import NodeMaps
from nfpipe.catalog.telemetry import Telemetry
from nfpipe.loader import Map, Object, ObjectSpec
from nfpipe.toolchain import compile as nf_compile, find_compiler
from nfpipe.topo import Topology
from nfpipe.topo.traffic import serve_tcp_echo, serve_udp_echo, tcp_exchange

XDP_VERDICTS = {0: "XDP_ABORTED", 1: "XDP_DROP", 2: "XDP_PASS", 3: "XDP_TX", 4: "XDP_REDIRECT"}
BLOCKED_UDP_PORT = 53


def demo_packets():
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    return [
        ("TCP SYN 10.0.0.1 -> 10.0.0.2:80",
         eth / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=80, flags="S")),
        (f"UDP 10.0.0.1 -> 10.0.0.2:{BLOCKED_UDP_PORT} (DNS)",
         eth / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5353, dport=BLOCKED_UDP_PORT)),
        ("UDP 10.0.0.1 -> 10.0.0.2:123 (NTP)",
         eth / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=123, dport=123) / (b"\0" * 48)),
        ("ICMP echo 10.0.0.1 -> 10.0.0.2",
         eth / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP()),
        ("IPv6 UDP 2001:db8::1 -> 2001:db8::2:53",
         eth / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(dport=53)),
        ("IPv4 header cut short (10 bytes)",
         bytes(eth / IP(src="10.0.0.1", dst="10.0.0.2"))[:24]),
    ]


def _tcp_connects(addr: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((addr, port), timeout=timeout):
            return True
    except OSError:
        return False


def syns_sent() -> int:
    """SYNs this network namespace's TCP has sent: every connect() that sent one (Tcp
    ActiveOpens, refused attempts included) plus every SYN retransmission (TcpExt
    TCPSynRetrans)."""
    return _proc_counter("/proc/net/snmp", "Tcp:", "ActiveOpens") + \
        _proc_counter("/proc/net/netstat", "TcpExt:", "TCPSynRetrans")


def _proc_counter(path: str, table: str, name: str) -> int:
    """One counter of a /proc/net/{snmp,netstat} table (a header line, then values)."""
    with open(path) as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith(table):
            return int(dict(zip(names.split()[1:], values.split()[1:])).get(name, 0))
    return 0


def _udp_sends(addr: str, port: int, count: int) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(count):
            s.sendto(b"demo %d" % i, (addr, port))
    return count


def run_pipeline_demo(json_output: bool = False) -> int:
    name = f"demo{uuid.uuid4().hex[:6]}"
    text = (resources.examples_dir() / "firewall.yaml").read_text().replace(
        "pipeline: firewall", f"pipeline: {name}")
    say = (lambda *_: None) if json_output else print
    report: dict = {"pipeline": name}
    with tempfile.TemporaryDirectory() as tmp:
        pfile = f"{tmp}/{name}.yaml"
        with open(pfile, "w") as f:
            f.write(text)
        topo = Topology.from_file(resources.topologies_dir() / "two-hosts.yaml")
        say(f"1. topology two-hosts up (run {topo.run_id}): client -- dut -- server")
        topo.up()
        try:
            server = topo.address("server", "eth0")
            client = topo.address("client", "eth0")
            target = Target(topo.ifname("dut", "eth0"), topo.netns("dut"))
            m = D.deploy(pfile, targets=[target], mode="auto")
            iface = m.interfaces[0]
            say(f"2. deployed examples/firewall.yaml as '{name}' at XDP ({iface.mode}) on "
                f"dut:eth0, program {m.entry_prog_id}, state in {D.state_dir(name)}")
            say("3. traffic from the client to the server through the DUT:")
            echo = topo.start("server", serve_tcp_echo, server, 8080)
            before = topo.call("client", syns_sent)
            got = topo.call("client", tcp_exchange, server, 8080, b"hello through nfpipe")
            echo.result(timeout=20)
            # the SYNs to 8080 the client's kernel sent: the first, a connect retried
            # while the server was not listening yet, retransmissions; all pass the
            # filter, so the telemetry node sees each
            sent = topo.call("client", syns_sent) - before
            web = topo.call("client", _tcp_connects, server, 80)
            udp_srv = topo.start("server", serve_udp_echo, server, 5353, 1, 2.0)
            topo.call("client", _udp_sends, server, 5353, 5)
            try:
                udp_srv.result(timeout=10)
                udp_arrived = True
            except Exception:
                udp_arrived = False
            rows = [("TCP to 8080 (allowed)", got == b"hello through nfpipe"),
                    ("TCP to 80 (dropped by rule 2)", web),
                    ("UDP x5 to 5353 (dropped by rule 1)", udp_arrived)]
            for label, ok in rows:
                say(f"   {label:<36} {'got through' if ok else 'blocked'}")
            st = D.status(name)[0]
            counters = D.stats(name)
            say(f"4. nfpipe status: {st['state']}; nfpipe stats (packets per node outcome):")
            for node, row in counters.items():
                say(f"   {node:<6} " + ", ".join(f"{k}={v['packets']}" for k, v in row.items()))
            with Map.from_pin(m.maps["stats__syn_sources"]) as mp:
                syn = {str(k): v for k, v in Telemetry.syn_sources(
                    NodeMaps({"stats__syn_sources": mp}, "stats")).items()}
            say(f"   SYNs per source seen by the telemetry node: {syn}")
            report.update(run_id=topo.run_id, syns_sent=sent, mode=iface.mode,
                          traffic={label: ok for label, ok in rows},
                          status=st["state"], stats=counters, syn_sources=syn,
                          client=client, server=server)
            # A live update: the web rule leaves the file; deploying it again builds the
            # filter's new rules into its program and swaps that in (no packet lost).
            with open(pfile, "w") as f:
                f.write(text.replace("        - {action: drop, proto: tcp, dport: [80, 443], "
                                     "name: no web}\n", ""))
            m2 = D.deploy(pfile, targets=[target], mode="auto")
            echo = topo.start("server", serve_tcp_echo, server, 80)
            web_after = topo.call("client", tcp_exchange, server, 80, b"web") == b"web"
            echo.result(timeout=20)
            same = [n.prog_id for n in m2.nodes] == [n.prog_id for n in m.nodes]
            say(f"5. 'no web' rule removed from the file and deployed again: "
                f"{m2.update['how']} update to revision {m2.revision}"
                f"{', same programs' if same else ''}; TCP to 80 now "
                f"{'gets through' if web_after else 'is still blocked'}")
            report.update(update=m2.update["how"], revision=m2.revision,
                          same_programs=same, web_after_update=web_after)
        finally:
            if D.state_dir(name).exists():
                D.destroy(name)
            topo.down()
            say("6. pipeline destroyed, topology down: nothing left behind")
    if json_output:
        json.dump(report, sys.stdout, indent=2, default=str)
        print()
    ok = report.get("traffic") and list(report["traffic"].values()) == [True, False, False] \
        and report.get("web_after_update") is True
    return 0 if ok else 1


def run_demo(json_output: bool = False) -> int:
    src = resources.bpf_dir() / "examples" / "xdp_count.c"
    cc = find_compiler()
    obj_path = nf_compile(src)
    spec = ObjectSpec.from_file(obj_path)
    rows = []
    with Object.load(spec, constants={"blocked_udp_port": BLOCKED_UDP_PORT}) as obj:
        prog = obj.programs["xdp_count"]
        for label, pkt in demo_packets():
            res = prog.test_run(pkt)
            rows.append({"packet": label, "retval": res.retval,
                         "verdict": XDP_VERDICTS.get(res.retval, str(res.retval)),
                         "duration_ns": res.duration_ns})
        per_verdict = {XDP_VERDICTS[k]: sum(v) for k, v in obj.maps["counters"].items() if sum(v)}
        protocols = {int(k): v for k, v in sorted(obj.maps["protocols"].items())}
        seen = obj.maps[".bss"][0]["seen"]
        bench = prog.test_run(demo_packets()[0][1], repeat=100000)
    report = {"compiler": f"{cc.kind}: {cc.version}", "object": str(obj_path),
              "blocked_udp_port": BLOCKED_UDP_PORT, "runs": rows, "counters": per_verdict,
              "protocols": protocols, "seen": seen, "ns_per_packet": bench.duration_ns}
    if json_output:
        json.dump(report, sys.stdout, indent=2)
        print()
        return 0
    print(f"compiled {src.name} with {report['compiler']}")
    print(f"loaded into the kernel with blocked_udp_port={BLOCKED_UDP_PORT} (.rodata, "
          f"frozen before the verifier ran)\n")
    print(f"  {'packet':<42} {'verdict':<12} {'ns':>6}")
    for r in rows:
        print(f"  {r['packet']:<42} {r['verdict']:<12} {r['duration_ns']:>6}")
    print("\nmaps after the run (read back from the kernel):")
    print(f"  counters (per-CPU array, summed): {per_verdict}")
    print(f"  protocols (hash, IP proto -> packets): {protocols}")
    print(f"  .bss seen: {seen}")
    print(f"\n{bench.duration_ns} ns/packet for the TCP SYN over 100000 in-kernel runs")
    return 0

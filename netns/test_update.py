"""Hitless updates (two-hosts): a deployed pipeline is changed seven times while numbered
UDP datagrams stream through it, and not one is lost or mis-handled.

The pipeline on dut:eth0 is ``ttl`` (the user C NF ttl_guard, entry) -> ``fw``
(filter: drop UDP to 9999; ``classifier: linear``, so that its rules live in its maps
only: by default a filter builds its deployed rules into its program too, and a
change of them in the file is a swap) -> ``tlm`` (telemetry) -> pass.  The client sends
5000 datagrams/s, nine of every ten to port 7000 (allowed) and one to 9999
(dropped by ``fw``), each carrying its sequence number; the server receives on
both ports.  Meanwhile ``nfpipe deploy`` (the CLI, a new process each time) runs
on a changed file, and each change takes the path it should:

1. runtime     fw gets a second rule: written into its maps, nothing reloaded;
2. swap        tlm's sample rate (a load-time constant): its slot in nfp_jmp;
3. swap        ttl's threshold: the entry node, so every link's program;
4. generation  a second telemetry node in the middle: new programs, new nfp_jmp,
               one link update;
5. generation  the node removed again;
6. generation  tail calls -> one fused program;
7. generation  fused -> tail calls;

and the same file deployed once more changes nothing.

Then: every datagram to 7000 arrived exactly once; none to 9999 did; the
filter's drop count (its row of nfp_stats, which every revision shares) equals
the datagrams sent to 9999; no node ever missed a tail call or aborted; the
pipeline runs revision 8.  Once per hook: XDP native, XDP generic, tcx.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

from netns.conftest import scenario_fixture
from netns.harness import ATTACH_MODE, HOOK_OF, ROOT
from nfpipe import deploy as D
from nfpipe.topo.traffic import serve_udp_echo, udp_exchange, udp_sink, udp_stream

scenario = scenario_fixture("two-hosts")

SERVER = "198.51.100.2"
PASS, DROP = 7000, 9999
PORTS = [PASS] * 9 + [DROP]
TTL_GUARD = ROOT / "bpf" / "examples" / "ttl_guard.c"


def pipeline(name: str, hook: str, *, min_ttl=1, rules=1, sample_rate=0, middle=False,
             linking="tailcall") -> str:
    rule_list = [f"{{action: drop, proto: udp, dport: {DROP}}}",
                 "{action: drop, proto: tcp, dport: 23}"][:rules]
    text = f"""pipeline: {name}
hook: {hook}
linking: {linking}
nodes:
  - id: ttl
    nf: {TTL_GUARD}
    config: {{min_ttl: {min_ttl}}}
  - id: fw
    nf: filter
    config:
      classifier: linear
      rules: [{", ".join(rule_list)}]
  - id: tlm
    nf: telemetry
    config: {{sample_rate: {sample_rate}}}
"""
    if middle:
        text += "  - id: mid\n    nf: telemetry\n"
    text += "edges:\n  - ttl -> fw\n"
    text += "  - fw -> mid\n  - mid -> tlm\n" if middle else "  - fw -> tlm\n"
    return text + "  - tlm -> pass\n"


STEPS = [
    (dict(rules=2), "runtime"),
    (dict(rules=2, sample_rate=100), "swap"),
    (dict(rules=2, sample_rate=100, min_ttl=2), "swap"),
    (dict(rules=2, sample_rate=100, min_ttl=2, middle=True), "generation"),
    (dict(rules=2, sample_rate=100, min_ttl=2), "generation"),
    (dict(rules=2, sample_rate=100, min_ttl=2, linking="fused"), "generation"),
    (dict(rules=2, sample_rate=100, min_ttl=2), "generation"),
]


def cli_deploy(path, where: str, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "nfpipe.cli.main", "deploy", str(path),
                          "--iface", where, "--mode", mode, "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_updates_under_traffic_lose_no_packet(scenario, mode, tmp_path):
    topo = scenario.topo
    name = f"zl{uuid.uuid4().hex[:8]}"
    hook, attach_mode = HOOK_OF[mode], ATTACH_MODE[mode]
    where = f"{topo.netns('dut')}:{topo.ifname('dut', 'eth0')}"
    f = tmp_path / "pipeline.yaml"
    f.write_text(pipeline(name, hook))
    ready, stop = str(tmp_path / "ready"), str(tmp_path / "stop")
    sink = stream = None
    try:
        m = cli_deploy(f, where, attach_mode)
        assert m["revision"] == 1
        # neighbours resolved both ways before counting starts
        echo = topo.start("server", serve_udp_echo, SERVER, PASS, 1)
        topo.call("client", udp_exchange, SERVER, PASS, b"warm")
        echo.result(timeout=20)

        sink = topo.start("server", udp_sink, SERVER, [PASS, DROP], ready, stop)
        deadline = time.monotonic() + 10
        while not os.path.exists(ready):
            assert time.monotonic() < deadline, "the sink did not start"
            time.sleep(0.02)
        stream = topo.start("client", udp_stream, SERVER, PORTS, stop, 5000)
        time.sleep(0.5)
        hows = []
        for kwargs, _want in STEPS:
            f.write_text(pipeline(name, hook, **kwargs))
            hows.append(cli_deploy(f, where, attach_mode)["update"]["how"])
            time.sleep(0.3)
        again = cli_deploy(f, where, attach_mode)       # the same file once more
        assert (again["update"]["how"], again["revision"]) == ("unchanged", 1 + len(STEPS))
        time.sleep(0.5)
        open(stop, "w").close()
        sent = stream.result(timeout=60)
        seen = sink.result(timeout=60)
        stream = sink = None

        assert hows == [want for _kw, want in STEPS]
        total = sum(sent.values())
        assert total > 20000                     # the updates ran under traffic
        want = [n for n in range(total) if PORTS[n % len(PORTS)] == PASS]
        got = sorted(seen[PASS])
        missing = sorted(set(want) - set(got))
        assert not missing, f"{len(missing)} of {len(want)} lost, first: {missing[:10]}"
        assert got == want                       # and none twice
        assert seen[DROP] == []                  # and none let through that must not be

        counters = D.stats(name)
        assert counters["fw"]["drop"]["packets"] == sent[DROP]
        for node, row in counters.items():
            assert "tail_call_miss" not in row and "aborted" not in row, (node, row)
        st = D.status(name)[0]
        assert st["state"] == "running" and st["revision"] == 1 + len(STEPS)
        assert st["linking"] == "tailcall"
        # nothing of an earlier revision is left pinned
        pins = {p.relative_to(D.state_dir(name)).parts[0]
                for p in D.state_dir(name).rglob("*") if not p.is_dir()}
        m = D.read_manifest(D.state_dir(name))
        revisions = {p.split("/")[-3] for p in m.maps.values()} | \
            {n.program.split("/")[-3] for n in m.nodes}
        assert pins == {"manifest", "links"} | revisions
    finally:
        open(stop, "w").close()
        for h in (stream, sink):
            if h is not None:
                try:
                    h.result(timeout=30)
                except Exception:
                    pass
        if D.state_dir(name).exists():
            D.destroy(name)

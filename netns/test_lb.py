"""lb (client1, client2 — DUT — backend1..3): real TCP connections to a VIP spread over
weighted backends; drain and removal at runtime.

The pipeline (netns/pipelines/lb.yaml): VIP 203.0.113.10:80/tcp over 10.1.0.11/12/13
port 8080 with weights 1:2:3, attached to dut:eth0 (clients: forward DNAT) and
dut:eth1 (backends: replies get the VIP back as source).  The clients reach the VIP
through their default route (via the DUT); the backends' default route points at
the DUT.

* spread: 240 HTTP requests, each a new TCP connection, from both clients at once;
  every answer comes from the backend the NF's own model (flow_hash + the Maglev
  table of the control plane) predicts for that connection's 5-tuple, and the
  per-backend counts are within 5 sigma of the binomial for the weight shares;
* drain: two keep-alive connections are held open, on backends chosen by source
  port (predicted with the model): one on the backend that will be drained (X), one
  on another (Y).  After ``LoadBalancer.update`` drains X, both keep working on
  their backends, and new connections never reach X;
* remove: after X is removed from the config, new connections never reach X, and
  both established connections keep working on their backends — X's too: a
  removed backend retires (no new flows, established ones go on) until purged.
"""
from __future__ import annotations

import copy
import ipaddress
import math
import socket

from netns.conftest import scenario_fixture
from netns.harness import MODES, PIPELINES, RemoteKeepAlive, http_many
from nfpipe.catalog.lb import flow_hash

scenario = scenario_fixture("lb")

VIP, VPORT = "203.0.113.10", 80
CLIENTS = {"client1": "192.0.2.11", "client2": "192.0.2.12"}
BACKENDS = {"10.1.0.11:8080": "backend1", "10.1.0.12:8080": "backend2",
            "10.1.0.13:8080": "backend3"}
WEIGHTS = {"backend1": 1, "backend2": 2, "backend3": 3}
N_PER_CLIENT = 120
N_AFTER = 40           # new connections per client after each update


def config(states: dict[str, str] | None = None, drop: tuple = ()) -> dict:
    import yaml
    cfg = yaml.safe_load((PIPELINES / "lb.yaml").read_text())["nodes"][0]["config"]
    cfg = copy.deepcopy(cfg)
    bes = []
    for b in cfg["vips"][0]["backends"]:
        name = BACKENDS[b["addr"]]
        if name in drop:
            continue
        if states and name in states:
            b["state"] = states[name]
        bes.append(b)
    cfg["vips"][0]["backends"] = bes
    return cfg


def predict(lb, client: str, sport: int) -> str | None:
    """The backend the NF's current table gives a new flow client:sport -> VIP:80."""
    v = next(iter(lb.plan.vips.values()))
    table = lb.plan.tables[v.key]
    h = flow_hash(lb.hash_seed, v.family, ipaddress.ip_address(client).packed,
                  ipaddress.ip_address(VIP).packed, sport, VPORT, socket.IPPROTO_TCP)
    bid = table[h % len(table)]
    if bid == 0:
        return None
    return BACKENDS[lb.plan.backends[bid][1].name]


def pick_sport(lb, client: str, backend: str, start: int) -> int:
    for sport in range(start, start + 500):
        if predict(lb, client, sport) == backend:
            return sport
    raise AssertionError(f"no source port maps to {backend}")


def spread(sc, n: int) -> list[dict]:
    """n GETs per client, each a new connection, both clients at once."""
    hs = {c: sc.start(c, http_many, VIP, VPORT, n) for c in CLIENTS}
    return [a for c, h in hs.items() for a in h.result(timeout=120)]


def check_model(lb, answers: list[dict], mode: str) -> None:
    wrong = [(a["client"], a["server"], predict(lb, *a["client"])) for a in answers
             if a["server"] != predict(lb, *a["client"])]
    assert not wrong, f"{len(wrong)} connections not on the predicted backend ({mode}): " \
                      f"{wrong[:5]}"
    for a in answers:       # DNAT only: the backend sees the real client address
        assert a["peer"] == a["client"][0] and a["port"] == a["client"][1]


def test_lb(scenario, mode, tmp_path):
    sc = scenario
    if not getattr(sc, "_lb_servers", False):
        for addr, name in BACKENDS.items():
            ip, port = addr.split(":")
            sc.http_server(name, ip, int(port))
        sc._lb_servers = True
        # the VIP is routed to the DUT from both clients (their default route)
        for c in CLIENTS:
            with sc.topo.iproute(c) as ipr:
                [r] = ipr.route("get", dst=VIP)
                assert r.get_attr("RTA_GATEWAY") == "192.0.2.1", (c, r)

    with sc.deploy("lb.yaml", mode, ["eth0", "eth1"]) as dep:
        lb, maps = dep.impl("lb"), dep.node_maps("lb")

        # --- weighted spread over new connections ---
        answers = spread(sc, N_PER_CLIENT)
        n = len(answers)
        assert n == N_PER_CLIENT * len(CLIENTS)
        check_model(lb, answers, mode)
        total_w = sum(WEIGHTS.values())
        counts = {b: sum(a["server"] == b for a in answers) for b in WEIGHTS}
        for b, w in WEIGHTS.items():
            p = w / total_w
            sigma = math.sqrt(n * p * (1 - p))
            assert abs(counts[b] - n * p) <= 5 * sigma, (mode, counts)
        st = lb.stats(maps)
        new_flows = {BACKENDS[name]: v["new_flows"] for (_, name), v in st["backends"].items()}
        assert new_flows == counts, (mode, new_flows, counts)

        # --- drain X while connections to X and to Y are established ---
        x, y = "backend2", "backend3"
        # source ports above the ephemeral range (32768-60999), so no earlier connection
        # holds them; fresh ones per mode (the previous mode's are in TIME_WAIT)
        base = 61000 + 1200 * MODES.index(mode)
        c1 = CLIENTS["client1"]
        sx = pick_sport(lb, c1, x, base)
        sy = pick_sport(lb, c1, y, sx + 1)
        held = []
        try:
            ka_x = RemoteKeepAlive(sc, "client1", VIP, VPORT, tmp_path / "kax", (c1, sx))
            held.append(ka_x)
            ka_y = RemoteKeepAlive(sc, "client1", VIP, VPORT, tmp_path / "kay", (c1, sy))
            held.append(ka_y)
            rx, ry = ka_x.get(), ka_y.get()
            assert rx["ok"]["server"] == x and ry["ok"]["server"] == y, (rx, ry)

            before_x = lb.stats(maps)["backends"]
            lb.update(maps, config(states={x: "draining"}))
            for _ in range(3):     # established connections stay where they are
                rx, ry = ka_x.get(), ka_y.get()
                assert rx.get("ok", {}).get("server") == x, (mode, "drained", rx)
                assert ry.get("ok", {}).get("server") == y, (mode, "drained", ry)
                assert rx["ok"]["port"] == sx and ry["ok"]["port"] == sy  # same connections
            after = spread(sc, N_AFTER)
            check_model(lb, after, mode)
            assert x not in {a["server"] for a in after}, f"drained {x} got new flows ({mode})"
            st = lb.stats(maps)["backends"]
            xkey = next(k for k in st if BACKENDS[k[1]] == x)
            assert st[xkey]["new_flows"] == before_x[xkey]["new_flows"]
            assert st[xkey]["packets"] > before_x[xkey]["packets"]     # ka_x still served

            # --- remove X ---
            lb.update(maps, config(drop=(x,)))
            ry = ka_y.get()
            assert ry.get("ok", {}).get("server") == y and ry["ok"]["port"] == sy, \
                (mode, "removed", ry)
            after = spread(sc, N_AFTER)
            check_model(lb, after, mode)
            assert x not in {a["server"] for a in after}, f"removed {x} got new flows ({mode})"
            assert {a["server"] for a in after} == {"backend1", "backend3"}
            for _ in range(3):     # the removed backend's connection goes on (retired)
                rx = ka_x.get()
                assert rx.get("ok", {}).get("server") == x and rx["ok"]["port"] == sx, \
                    (mode, "removed", rx)
            assert [held.pop(0).close() for _ in range(2)] == [7, 5]   # GETs each served
        finally:
            for ka in held:         # after a failure: stop what is left, keep its error
                try:
                    ka.close()
                except Exception as exc:
                    print(f"keep-alive worker: {exc}")

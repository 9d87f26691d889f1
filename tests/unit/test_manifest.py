"""The deploy manifest as typed records: JSON in and out unchanged, versions checked."""
from __future__ import annotations

import json

import pytest

from nfpipe.deploy.manifest import (
    MANIFEST_VERSION,
    Intent,
    InterfaceRecord,
    Manifest,
    NodeRecord,
    Pending,
)
from nfpipe.errors import DeployError

# A manifest as a deploy of nfpipe with format version 2 pins it (trimmed to two nodes).
V2 = {
    "version": 2, "revision": 3, "pipeline": "fw", "file": "/p/fw.yaml", "source": "x",
    "hook": "xdp", "mode": "auto", "linking": "tailcall", "fused_style": None,
    "program_key": "k", "plan": {"nodes": [{"id": "fw", "ports": {"out": "stats (slot 1)"}}]},
    "nodes": [{"id": "fw", "index": 0, "ports": ["out", "port1"], "nf": "filter", "code": "c1",
               "config": {"rules": []}, "state": None, "program": "/b/r1/progs/fw",
               "prog_id": 10},
              {"id": "stats", "index": 1, "ports": ["out"], "nf": "telemetry", "code": "c2",
               "config": {}, "state": {"x": 1}, "program": "/b/r3/progs/stats",
               "prog_id": 11}],
    "entry": {"program": "/b/r1/progs/fw", "prog_id": 10}, "entry_prog_id": 10,
    "jmp": "/b/r1/maps/nfp_jmp",
    "interfaces": [{"iface": "eth0", "netns": "ns", "mode": "native", "kind": "Link",
                    "prog_id": 10, "placement": ["native: yes"], "key": "ns@eth0",
                    "link": "/b/links/ns@eth0", "attachment": None, "force": False}],
    "maps": {"nfp_jmp": "/b/r1/maps/nfp_jmp", "fw__hits": "/b/r1/maps/fw__hits"},
    "deployed_at": 1.0, "updated_at": 2.0,
    "history": [{"revision": 3, "at": 2.0, "how": "swap", "lines": ["swap: ..."]}],
}


def test_version_2_reads_and_writes_back_the_same_json():
    m = Manifest.from_json(json.loads(json.dumps(V2)))
    assert isinstance(m.nodes[0], NodeRecord) and isinstance(m.interfaces[0], InterfaceRecord)
    assert m.node("stats").state == {"x": 1} and m.entry_program == "/b/r1/progs/fw"
    assert m.to_json() == V2
    assert m.wired_ports("fw") == ["out"]
    assert m.referenced() == {"/b/r1/maps/nfp_jmp", "/b/r1/maps/fw__hits", "/b/r1/progs/fw",
                              "/b/r3/progs/stats", "/b/links/ns@eth0"}


@pytest.mark.parametrize("version", [None, 1, 3, "2"])
def test_other_versions_are_refused_with_what_to_do(version):
    data = dict(V2)
    if version is None:
        del data["version"]
    else:
        data["version"] = version
    with pytest.raises(DeployError, match=r"format version .*this nfpipe reads version 2.*"
                                          r"destroy the pipeline"):
        Manifest.from_json(data, where="/sys/fs/bpf/nfpipe/fw/manifest")


def test_next_revision_keeps_the_history_bounded_and_the_original_untouched():
    m = Manifest.from_json(V2)
    m.update = {"how": "swap", "lines": []}
    n = m
    for i in range(30):
        n = n.next_revision("runtime", [f"change {i}"])
    assert n.revision == 33 and len(n.history) == 20 and n.history[-1]["lines"] == ["change 29"]
    assert n.update is None and "update" not in n.to_json()
    assert m.revision == 3 and len(m.history) == 1        # a deep copy


def test_pending_changes_only_in_manifest_next():
    m = Manifest.from_json(V2)
    assert "pending" not in m.to_json()
    m.pending = [Pending("fw", "filter", {}, None, {"rules": [1]})]
    again = Manifest.from_json(m.to_json())
    assert again.pending == m.pending
    assert m.report() == m.to_json()
    m.update = {"how": "runtime", "lines": ["x"]}
    assert m.report()["update"] == {"how": "runtime", "lines": ["x"]}


def test_a_pending_change_to_the_nodes_config_holds_it_once():
    """A runtime change's config is the node record's (a filter's may be 10k rules):
    the record holds it once, and reads back as that node's config."""
    m = Manifest.from_json(V2)
    rules = {"rules": [{"action": "drop", "proto": "udp", "dport": 53}]}
    m.node("fw").config = rules
    m.pending = [Pending("fw", "filter", {"rules": []}, None, rules),
                 Pending("stats", "telemetry", {}, {"x": 1}, {"sample": 2})]
    text = json.dumps(m.to_json())
    assert text.count('"dport": 53') == 1
    again = Manifest.from_json(json.loads(text))
    assert again.pending == m.pending
    assert again.pending[0].config is again.node("fw").config
    assert again.pending[1].config == {"sample": 2}      # not the node's: its own


def test_intent_round_trip():
    data = {"entry_prog_id": 7, "hook": "xdp",
            "targets": [{"iface": "eth0", "netns": None, "qdisc_before": None,
                         "replaced": None},
                        {"iface": "eth1", "netns": "ns1", "qdisc_before": "clsact",
                         "replaced": {"prog_id": 9, "prog_name": "xdp_pass",
                                      "mode": "native", "pin": "/sys/fs/bpf/x"}}]}
    assert Intent.from_json(data).to_json() == data
    old = {"entry_prog_id": 7, "hook": "tc-ingress",       # written before "replaced"
           "targets": [{"iface": "eth0", "netns": None, "qdisc_before": None}]}
    assert Intent.from_json(old).targets[0].replaced is None
    assert MANIFEST_VERSION == 2


def test_the_nic_tiers_program_is_referenced_and_round_trips():
    """A tiered deploy pins the NIC's program beside the host's: status's repair must
    not take it for a pin an update left behind (it did: "removed 1 pin(s)")."""
    data = dict(V2, nic_program="/b/r1/nic/progs/fw")
    m = Manifest.from_json(json.loads(json.dumps(data)))
    assert "/b/r1/nic/progs/fw" in m.referenced()
    assert m.to_json() == data
    assert "nic_program" not in Manifest.from_json(V2).to_json()

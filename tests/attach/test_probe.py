"""nfpipe probe: kernel capabilities, and an interface's driver, XDP features (netdev
generic netlink), native XDP and offload trials, and current attachments."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nfpipe.attach import attach_xdp, query
from nfpipe.attach.netdev import XDP_FEATURE_BITS
from nfpipe.attach.probe import probe_interface
from nfpipe.profiles import compare, list_profiles, load_profile

pytestmark = pytest.mark.kernel


def test_probe_cli_json_on_a_veth_in_a_namespace(pair):
    out = subprocess.run([sys.executable, "-m", "nfpipe.cli.main", "probe", "vb",
                          "--netns", pair.ns, "--json"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    i = r["interface"]
    assert (i["iface"], i["netns"], i["driver"]) == ("vb", pair.ns, "veth")
    assert i["xdp"]["source"] == "netdev genetlink"
    assert {"basic", "redirect"} <= set(i["xdp"]["xdp_features"])
    assert "hw-offload" not in i["xdp"]["xdp_features"]
    assert i["xdp"]["xdp_features_raw"] == sum(XDP_FEATURE_BITS[n]
                                               for n in i["xdp"]["xdp_features"])
    assert i["native_xdp"] is True
    assert isinstance(i["offload"], str) and i["offload"].startswith("no")
    assert i["attached"]["xdp"] == [] and i["profile"] == "veth"
    assert i["profile_disagreements"] == []
    k = r["kernel"]
    assert k["release"] and k["btf"] is True and k["xdp_frags"] is True
    assert k["links"] == {"xdp_link": True, "tcx": True, "veth_native_xdp": True}
    assert k["program_types"]["xdp"] is True and k["program_types"]["sched_cls"] is True
    assert k["map_types"]["hash"] is True and k["map_types"]["ringbuf"] is True
    for helper in ("bpf_tail_call", "bpf_redirect", "bpf_xdp_adjust_head",
                   "bpf_xdp_adjust_tail", "bpf_fib_lookup", "bpf_ringbuf_output",
                   "bpf_xdp_load_bytes", "bpf_skb_store_bytes", "bpf_l3_csum_replace",
                   "bpf_l4_csum_replace"):
        assert k["helpers"][helper] is True, (helper, k["helpers"][helper])
    # the trials left nothing behind
    assert query("vb", netns=pair.ns)["xdp"] == []


def test_probe_cli_text_and_usage(pair):
    out = subprocess.run([sys.executable, "-m", "nfpipe.cli.main", "probe", "vb",
                          "--netns", pair.ns, "--no-kernel"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "driver veth" in out.stdout and "native XDP: yes" in out.stdout
    assert "profile veth: agrees with the probe" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "nfpipe.cli.main", "probe", "nfa-nope",
                          "--netns", pair.ns, "--no-kernel"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "no interface 'nfa-nope'" in bad.stderr   # bad input


def test_probe_never_disturbs_an_attached_program(pair, progs):
    prog = progs.programs["xdp_a"]
    with attach_xdp(prog, "vb", mode="generic", netns=pair.ns) as link:
        i = probe_interface("vb", pair.ns)
        # no trial on an occupied hook: veth's xdp-features answer for native
        assert i["native_xdp"] is True
        assert i["native_xdp_how"].startswith("the driver advertises XDP (xdp-features: "
                                              f"basic); program {prog.id} 'xdp_a' is "
                                              f"attached in generic mode")
        assert [(e["prog_id"], e["mode"], e["link_id"]) for e in i["attached"]["xdp"]] == \
            [(prog.id, "generic", link.id)]
        assert query("vb", netns=pair.ns)["xdp"][0]["prog_id"] == prog.id


def test_profiles_load_and_the_probe_wins():
    profiles = list_profiles()
    assert {"veth", "virtio_net", "mlx5_core", "i40e", "ice", "nfp", "netdevsim"} <= \
        set(profiles)
    nfp = profiles["nfp"]
    assert nfp.offload_supported and nfp.offload["tail_calls"] is False
    assert set(nfp.offload["map_types"]) == {"hash", "array"}
    veth = load_profile("veth")
    live = {"native_xdp": "no (EOPNOTSUPP)", "offload": True,
            "xdp": {"source": "netdev genetlink", "xdp_features": ["basic", "hw-offload"]}}
    whats = {d["what"]: d for d in compare(veth, live)}
    assert set(whats) == {"native_xdp", "xdp_features", "offload"}
    assert "missing redirect, rx-sg" in whats["xdp_features"]["note"]
    assert "unexpected hw-offload" in whats["xdp_features"]["note"]
    assert load_profile("no-such-driver") is None

"""nfpipe.nfabi is the Python twin of nf.h and pipeline.h: every value it holds is read
back from the C headers here, so the two cannot drift apart."""
from __future__ import annotations

import re

import pytest

from nfpipe import nfabi, resources
from nfpipe.errors import SpecError
from nfpipe.kernel import abi

NF_H = (resources.bpf_dir() / "include" / "nfpipe" / "nf.h").read_text()
PIPELINE_H = (resources.bpf_dir() / "include" / "nfpipe" / "pipeline.h").read_text()


def _define(text: str, name: str) -> int:
    m = re.search(rf"^#define {name} (\d+)\b", text, re.M)
    assert m, f"no #define {name}"
    return int(m.group(1))


def test_limits_and_stats_layout_match_the_headers():
    assert _define(NF_H, "NFP_MAX_PORTS") == nfabi.MAX_PORTS
    assert _define(PIPELINE_H, "NFP_MAX_NODES") == nfabi.MAX_NODES
    assert _define(PIPELINE_H, "NFP_STAT_SLOTS") == nfabi.STAT_SLOTS
    assert _define(PIPELINE_H, "NFP_STAT_MISS") == nfabi.STAT_MISS
    # NFP_STAT_VERDICT(v) is (NFP_MAX_PORTS + (-(v) - 1)): 8..12 for PASS..ABORTED
    assert "(NFP_MAX_PORTS + (-(v) - 1))" in PIPELINE_H
    assert sorted(nfabi.OUTCOME_NAMES) == [8, 9, 10, 11, 12, nfabi.STAT_MISS]
    assert nfabi.OUTCOME_NAMES[8] == "pass" and nfabi.OUTCOME_NAMES[12] == "aborted"
    shared = set(re.findall(r"\} (nfp_\w+) SEC\(\"\.maps\"\)", PIPELINE_H + NF_H))
    assert set(nfabi.SHARED_MAPS) <= shared


def test_verdicts_match_enum_nfp_verdict():
    body = re.search(r"enum nfp_verdict \{(.*?)\};", NF_H, re.S).group(1)
    c = {name: int(v) for name, v in re.findall(r"NFP_(\w+) = (-?\d+)", body)}
    assert c == {v.name: int(v) for v in nfabi.Verdict}


@pytest.mark.parametrize("hook, table", [("NFP_HOOK_XDP", nfabi.XDP_CODES),
                                         ("NFP_HOOK_TC", nfabi.TC_CODES)])
def test_hook_codes_match_nfp_hook_verdict(hook, table):
    """nfp_hook_verdict() in nf.h maps each verdict to the hook's code; the values of those
    codes are nfpipe.kernel.abi's (checked against the UAPI headers in test_abi_layout)."""
    fn = NF_H[NF_H.index("nfp_hook_verdict("):]
    xdp, tc = fn.split("#else", 1)
    body = xdp if hook == "NFP_HOOK_XDP" else tc.split("#endif", 1)[0]
    cases = dict(re.findall(r"case NFP_(\w+):\s*return (\w+)", body))
    default = re.search(r"default:\s*return (\w+)", body).group(1)
    for verdict, code in table.items():
        c_name = cases.get(verdict.name, default)
        if c_name == "bpf_redirect":               # TX/REDIRECT: bpf_redirect's result
            c_name = "XDP_REDIRECT" if hook == "NFP_HOOK_XDP" else "TC_ACT_REDIRECT"
        assert getattr(abi, c_name) == code, (verdict, c_name)


@pytest.mark.parametrize("name", ["fw", "_x", "Node_2"])
def test_good_node_names(name):
    assert nfabi.check_instance_name(name) == name


@pytest.mark.parametrize("name, why", [
    ("2fw", "C identifiers"), ("int", "C identifiers"), ("a-b", "C identifiers"),
    ("a__b", "'__'"), ("nfp_x", "reserved"), ("class", "C identifiers"),
])
def test_bad_node_names(name, why):
    with pytest.raises(SpecError, match=why):
        nfabi.check_instance_name(name)


def test_hook_define():
    assert nfabi.hook_define("xdp") == "NFP_HOOK_XDP"
    assert nfabi.hook_define("tc") == "NFP_HOOK_TC"
    with pytest.raises(SpecError, match="unknown hook 'tc-ingress'"):
        nfabi.hook_define("tc-ingress")
    assert [nfabi.nf_hook(h) for h in nfabi.PIPELINE_HOOKS] == ["xdp", "tc", "tc"]

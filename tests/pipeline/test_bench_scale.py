"""`nfpipe bench --scale`: the filter's rule sets as nftables would hold them (rule for
rule, and with sets) are rule sets nft takes, and a run measures every way on live
frames, leaving nothing behind (no time is asserted)."""
from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest

from nfpipe.bench import scale
from nfpipe.testing.plugin import IN_CI
from nfpipe.topo import find_runs

pytestmark = pytest.mark.kernel


@pytest.fixture
def nft():
    if shutil.which("nft") is None:
        if IN_CI:
            pytest.fail("CI=true: nft is needed (.ci/run installs nftables)")
        pytest.skip("nft is not installed (apt-get install nftables)")


def test_the_rule_sets_are_the_filters_own_shapes():
    rules = scale.scale_rules(1000)
    assert len(rules) == 1000 and rules[-1] == scale.LAST
    assert all(r["action"] == "drop" for r in rules)
    assert scale._nft_match(rules[4]) == ("ip6 saddr 2001:db8:4::/48 ip6 daddr "
                                          "2001:db8:ffff::/48 meta l4proto { tcp, udp } "
                                          "th sport 1024-65535 th dport 2004")
    assert scale._nft_match(rules[1]) == "tcp dport { 80, 443 }"
    sets = scale.nft_sets(rules, "eth0")
    assert sets.count(" drop\n") == 5 and "10.3.230.0/24 . 1098" in sets


def test_nft_takes_both_forms_at_10k_rules(nft):
    ns, a = f"nfpsc{uuid.uuid4().hex[:6]}", f"s{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", a, "type", "veth", "peer", "name",
                        a + "p"], check=True)
        rules = scale.scale_rules(10_000)
        for text in (scale.nft_rules(rules, a), scale.nft_sets(rules, a)):
            r = subprocess.run(["ip", "netns", "exec", ns, "nft", "-c", "-f", "-"], input=text,
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr[:2000]
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_a_scale_run_measures_every_way(nft):
    before = find_runs()
    results = scale.run_scale(["10"], frames=20_000, rounds=1, json_output=True)
    assert [(r.way, r.rules) for r in results] == [(w, 10) for w in scale.WAYS]
    for r in results:
        assert not r.skipped and r.received > 0 and r.ns_per_packet > 0, r
    ratios = scale.as_json(results)["scale_ratios"]
    assert ratios["nfpipe_over_10_rules"] == {"10": 1.0}
    assert set(ratios) == {"nfpipe_over_10_rules", "nftables-rules_over_nfpipe",
                           "nftables-sets_over_nfpipe"}
    assert find_runs() == before

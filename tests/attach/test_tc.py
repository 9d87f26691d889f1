"""TC attach: tcx links on both directions and the clsact/cls_bpf fallback, with traffic
counted, and detach removing exactly what was made."""
from __future__ import annotations

import pytest

from nfpipe.attach import ClsactFilter, Link, attach_tc, query, update
from nfpipe.attach.query import CLSACT_PARENT
from nfpipe.errors import AttachError
from nfpipe.kernel import abi, syscall as sc
from nfpipe.kernel.netns import ifindex, in_netns

from .conftest import SLOT, wait_for

pytestmark = pytest.mark.kernel


def hits(obj, prog):
    return obj.maps["hits"][SLOT[prog]]


def count_reaches(obj, prog, n):
    wait_for(lambda: hits(obj, prog) >= n)
    return hits(obj, prog)


def qdiscs(pair, ifname):
    with pair.ipr() as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        return sorted(q.get_attr("TCA_KIND") for q in ipr.get_qdiscs(index=idx))


def test_tcx_ingress_and_egress_count_and_detach(pair, progs):
    a, b = progs.programs["tc_a"], progs.programs["tc_b"]
    ingress = attach_tc(a, "vb", "ingress", netns=pair.ns, use="tcx")
    egress = attach_tc(b, "va", "egress", netns=pair.ns)          # auto picks tcx here
    try:
        assert isinstance(ingress, Link) and isinstance(egress, Link)
        assert (ingress.mode, egress.mode) == ("tcx", "tcx")
        # the kernel's own list (BPF_PROG_QUERY), not nfpipe's bookkeeping
        with in_netns(pair.ns):
            qi = sc.prog_query(ifindex("vb"), abi.AttachType.TCX_INGRESS)
            qe = sc.prog_query(ifindex("va"), abi.AttachType.TCX_EGRESS)
        assert (qi.prog_ids, qi.link_ids) == ([a.id], [ingress.id])
        assert (qe.prog_ids, qe.link_ids) == ([b.id], [egress.id])
        q = query("vb", netns=pair.ns)["tc"]
        assert [(e["via"], e["prog_name"], e["link_id"]) for e in q["ingress"]] == \
            [("tcx", "tc_a", ingress.id)]
        assert q["egress"] == []
        pair.send(6)
        assert count_reaches(progs, "tc_b", 6) == 6      # left va
        assert count_reaches(progs, "tc_a", 6) == 6      # arrived at vb
        ingress.detach()
        egress.detach()
        assert query("vb", netns=pair.ns)["tc"] == {"ingress": [], "egress": []}
        assert query("va", netns=pair.ns)["tc"] == {"ingress": [], "egress": []}
        pair.send(2)
        assert hits(progs, "tc_a") == 6 and hits(progs, "tc_b") == 6
        assert qdiscs(pair, "vb") == ["noqueue"]          # tcx needs no qdisc
    finally:
        ingress.close()
        egress.close()


def test_tcx_link_update(pair, progs):
    a, b = progs.programs["tc_a"], progs.programs["tc_b"]
    with attach_tc(a, "vb", "ingress", netns=pair.ns, use="tcx") as link:
        update(link, b)
        assert query("vb", netns=pair.ns)["tc"]["ingress"][0]["prog_id"] == b.id
        pair.send(3)
        assert count_reaches(progs, "tc_b", 3) == 3
        assert hits(progs, "tc_a") == 0


def test_clsact_fallback_creates_and_removes_its_qdisc(pair, progs):
    a, b = progs.programs["tc_a"], progs.programs["tc_b"]
    assert "clsact" not in qdiscs(pair, "vb")
    att = attach_tc(a, "vb", "ingress", netns=pair.ns, use="clsact")
    try:
        assert isinstance(att, ClsactFilter) and att.created_qdisc
        assert "clsact" in qdiscs(pair, "vb")
        q = query("vb", netns=pair.ns)
        assert q["qdisc"] == "clsact"
        [e] = q["tc"]["ingress"]
        assert (e["via"], e["prog_id"], e["prog_name"], e["direct_action"]) == \
            ("clsact", a.id, "tc_a", True)
        assert (e["priority"], e["handle"]) == (att.priority, att.handle)
        pair.send(4)
        assert count_reaches(progs, "tc_a", 4) == 4
        update(att, b)                               # cls_bpf replaces the program in place
        assert query("vb", netns=pair.ns)["tc"]["ingress"][0]["prog_name"] == "tc_b"
        pair.send(2)
        assert count_reaches(progs, "tc_b", 2) == 2
        att.detach()
        assert "clsact" not in qdiscs(pair, "vb")
        assert query("vb", netns=pair.ns)["tc"] == {"ingress": [], "egress": []}
    finally:
        if not att.detached:
            att.detach()


def test_clsact_detach_keeps_a_qdisc_and_filters_it_did_not_make(pair, progs):
    a, b = progs.programs["tc_a"], progs.programs["tc_b"]
    with pair.ipr() as ipr:                          # someone else's clsact and filter
        idx = ipr.link_lookup(ifname="vb")[0]
        ipr.tc("add", "clsact", idx)
        ipr.tc("add-filter", "bpf", idx, 7, fd=b.fileno(), name="foreign",
               parent=CLSACT_PARENT["ingress"], prio=5, direct_action=True)
    att = attach_tc(a, "vb", "ingress", netns=pair.ns, use="clsact")
    assert not att.created_qdisc and att.priority != 5
    before = query("vb", netns=pair.ns)["tc"]["ingress"]
    assert sorted(e["prog_name"] for e in before) == ["tc_a", "tc_b"]
    assert {e["filter_name"] for e in before} == {"tc_a", "foreign"}
    att.detach()
    after = query("vb", netns=pair.ns)["tc"]["ingress"]
    assert [(e["prog_id"], e["priority"], e["handle"]) for e in after] == [(b.id, 5, 7)]
    assert "clsact" in qdiscs(pair, "vb")


def test_tc_refusals(pair, progs):
    with pytest.raises(AttachError, match="not a tc"):
        attach_tc(progs.programs["xdp_a"], "vb", netns=pair.ns)
    with pytest.raises(AttachError, match="unknown tc direction"):
        attach_tc(progs.programs["tc_a"], "vb", "sideways", netns=pair.ns)
    with pytest.raises(AttachError, match="no interface 'nfa-nope'"):
        attach_tc(progs.programs["tc_a"], "nfa-nope", netns=pair.ns)


def test_pinned_tcx_link_reopens_with_its_direction(pair, progs):
    import os

    from nfpipe.kernel import bpffs
    a = progs.programs["tc_a"]
    pin = f"/sys/fs/bpf/{pair.ns}/tcx_egress"
    link = attach_tc(a, "va", "egress", netns=pair.ns, use="tcx")
    try:
        link.pin(pin)
        link.close()
        assert query("va", netns=pair.ns)["tc"]["egress"][0]["prog_id"] == a.id
        again = Link.from_pin(pin, netns=pair.ns)
        assert (again.kind, again.iface, again.direction, again.mode) == \
            ("tc", "va", "egress", "tcx")
        assert again.info()["kernel_prog_id"] == a.id
        again.detach()
        again.close()
        assert query("va", netns=pair.ns)["tc"]["egress"] == []
    finally:
        link.close()
        bpffs.unpin(pin, missing_ok=True)
        bpffs.remove_empty_dirs(os.path.dirname(pin))

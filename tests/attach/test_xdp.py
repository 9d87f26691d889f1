"""XDP attach on a veth pair in a private namespace: bpf_link in generic and native mode,
the netlink fallback, atomic replacement, pins, refusals — each checked by what the kernel
reports (query, rtnetlink IFLA_XDP) and by frames sent over the pair and counted."""
from __future__ import annotations

import os

import pytest

from nfpipe.attach import Link, attach_xdp, query, update
from nfpipe.errors import AttachError
from nfpipe.kernel import abi, bpffs, syscall as sc

from .conftest import SLOT, wait_for

pytestmark = pytest.mark.kernel

IFLA_XDP_PROG_ID_OF_MODE = {"native": "IFLA_XDP_DRV_PROG_ID", "generic": "IFLA_XDP_SKB_PROG_ID"}


def hits(obj, prog: str) -> int:
    return obj.maps["hits"][SLOT[prog]]


def count_reaches(obj, prog: str, n: int) -> int:
    """The counter of *prog* once it reached *n* (or after the timeout)."""
    wait_for(lambda: hits(obj, prog) >= n)
    return hits(obj, prog)


def rtnl_xdp(pair, ifname: str) -> dict:
    """IFLA_XDP of *ifname* straight from rtnetlink (independent of nfpipe's query)."""
    with pair.ipr() as ipr:
        link = ipr.get_links(ipr.link_lookup(ifname=ifname)[0])[0]
        x = link.get_attr("IFLA_XDP")
        return {k: v for k, v in x["attrs"]} if x else {}


@pytest.mark.parametrize("mode", ["generic", "native"])
def test_link_attach_counts_traffic_and_detaches(pair, progs, mode):
    prog = progs.programs["xdp_a"]
    link = attach_xdp(prog, "vb", mode=mode, netns=pair.ns)
    try:
        assert isinstance(link, Link) and link.mode == mode and link.prog_id == prog.id
        # the kernel's view, twice: rtnetlink and BPF link info
        x = rtnl_xdp(pair, "vb")
        assert x[IFLA_XDP_PROG_ID_OF_MODE[mode]] == prog.id
        assert x["IFLA_XDP_ATTACHED"] == ("xdp" if mode == "native" else "xdpgeneric")
        info = sc.link_info(link.fd)
        assert info.type == abi.LinkType.XDP and info.prog_id == prog.id
        q = query("vb", netns=pair.ns)
        assert q["xdp"] == [{"mode": mode, "prog_id": prog.id, "prog_name": "xdp_a",
                             "prog_type": "xdp", "prog_tag": prog.info().tag_hex,
                             "via": "link", "link_id": link.id}]
        pair.send(7)
        assert count_reaches(progs, "xdp_a", 7) == 7
        assert link.attached
        link.detach()
        assert not link.attached
        assert query("vb", netns=pair.ns)["xdp"] == []
        assert rtnl_xdp(pair, "vb").get("IFLA_XDP_ATTACHED") is None
        pair.send(3)
        assert hits(progs, "xdp_a") == 7
    finally:
        link.close()


def test_auto_mode_reports_what_stuck(pair, progs):
    with attach_xdp(progs.programs["xdp_a"], "vb", mode="auto", netns=pair.ns) as link:
        assert link.mode == "native" and link.attempts == []
        assert query("vb", netns=pair.ns)["xdp"][0]["mode"] == "native"
    # closing an unpinned link is detaching it
    assert query("vb", netns=pair.ns)["xdp"] == []


def test_link_update_is_atomic_and_checks_the_old_program(pair, progs):
    a, b = progs.programs["xdp_a"], progs.programs["xdp_b"]
    with attach_xdp(a, "vb", mode="native", netns=pair.ns) as link:
        pair.send(5)
        assert count_reaches(progs, "xdp_a", 5) == 5
        update(link, b)
        assert link.prog_id == b.id and sc.link_info(link.fd).prog_id == b.id
        assert query("vb", netns=pair.ns)["xdp"][0]["prog_name"] == "xdp_b"
        pair.send(4)
        assert count_reaches(progs, "xdp_b", 4) == 4
        assert hits(progs, "xdp_a") == 5
        # someone else swaps the program behind our back: our checked update refuses
        sc.link_update(link.fd, a)
        with pytest.raises(AttachError, match="no longer runs program"):
            update(link, b)
        assert sc.link_info(link.fd).prog_id == a.id


def test_pinned_link_outlives_close_and_reopens(pair, progs):
    prog = progs.programs["xdp_a"]
    pin = f"/sys/fs/bpf/{pair.ns}/xdp_link"
    link = attach_xdp(prog, "vb", mode="generic", netns=pair.ns)
    try:
        link.pin(pin)
        link.close()
        assert query("vb", netns=pair.ns)["xdp"][0]["prog_id"] == prog.id
        again = Link.from_pin(pin, netns=pair.ns)
        assert (again.iface, again.mode, again.prog_id) == ("vb", "generic", prog.id)
        again.detach()
        again.close()
        assert query("vb", netns=pair.ns)["xdp"] == []
    finally:
        link.close()
        bpffs.unpin(pin, missing_ok=True)
        bpffs.remove_empty_dirs(os.path.dirname(pin))


def test_netlink_fallback_attach_replace_and_detach(pair, progs):
    a, b = progs.programs["xdp_a"], progs.programs["xdp_b"]
    att = attach_xdp(a, "vb", mode="generic", netns=pair.ns, use_link=False)
    try:
        assert att.via == "netlink"
        assert rtnl_xdp(pair, "vb")["IFLA_XDP_SKB_PROG_ID"] == a.id
        assert query("vb", netns=pair.ns)["xdp"][0]["via"] == "netlink"
        pair.send(3)
        assert count_reaches(progs, "xdp_a", 3) == 3
        # without replace, a second attach is refused and names what is there
        with pytest.raises(AttachError, match=r"already has XDP attached: program \d+ "
                                              r"'xdp_a' in generic mode via netlink"):
            attach_xdp(b, "vb", mode="generic", netns=pair.ns, use_link=False)
        # atomic replacement: XDP_FLAGS_REPLACE with our program as the expected one
        update(att, b)
        assert rtnl_xdp(pair, "vb")["IFLA_XDP_SKB_PROG_ID"] == b.id
        pair.send(2)
        assert count_reaches(progs, "xdp_b", 2) == 2
        assert hits(progs, "xdp_a") == 3
        att.detach()
        assert query("vb", netns=pair.ns)["xdp"] == []
    finally:
        att.close()


def test_netlink_detach_leaves_a_foreign_replacement_alone(pair, progs):
    a, b = progs.programs["xdp_a"], progs.programs["xdp_b"]
    att = attach_xdp(a, "vb", mode="generic", netns=pair.ns, use_link=False)
    try:
        with pair.ipr() as ipr:       # a foreign tool replaces our program by hand
            ipr.link("set", index=ipr.link_lookup(ifname="vb")[0],
                     xdp={"attrs": [("IFLA_XDP_FD", b.fileno()),
                                    ("IFLA_XDP_FLAGS", abi.XDP_FLAGS_SKB_MODE)]})
        with pytest.raises(AttachError, match="no longer the one attached") as ei:
            att.detach()
        assert "Active program does not match expected" in ei.value.netlink_error
        assert rtnl_xdp(pair, "vb")["IFLA_XDP_SKB_PROG_ID"] == b.id
    finally:
        att.close()


def test_native_refused_while_generic_is_attached_says_why(pair, progs):
    att = attach_xdp(progs.programs["xdp_a"], "vb", mode="generic", netns=pair.ns,
                     use_link=False)
    try:
        with pytest.raises(AttachError) as ei:
            attach_xdp(progs.programs["xdp_b"], "vb", mode="native", netns=pair.ns,
                       use_link=False)
        e = ei.value
        assert (e.iface, e.mode) == ("vb", "native")
        assert "Native and generic XDP can't be active at the same time" in e.netlink_error
    finally:
        att.detach()
        att.close()


def test_foreign_program_is_reported_by_name(pair, progs):
    prog = progs.programs["xdp_b"]
    with pair.ipr() as ipr:          # attached by hand, the way ip link set xdp does
        ipr.link("set", index=ipr.link_lookup(ifname="vb")[0],
                 xdp={"attrs": [("IFLA_XDP_FD", prog.fileno()),
                                ("IFLA_XDP_FLAGS", abi.XDP_FLAGS_DRV_MODE)]})
    q = query("vb", netns=pair.ns)
    assert [(e["prog_name"], e["prog_id"], e["mode"], e["via"], e["link_id"])
            for e in q["xdp"]] == [("xdp_b", prog.id, "native", "netlink", None)]
    with pytest.raises(AttachError, match=rf"program {prog.id} 'xdp_b' in native mode"):
        attach_xdp(progs.programs["xdp_a"], "vb", mode="native", netns=pair.ns)


def test_refusals_name_interface_mode_and_reason(pair, progs):
    xdp = progs.programs["xdp_a"]
    with pytest.raises(AttachError) as ei:
        attach_xdp(xdp, "vb", mode="offload", netns=pair.ns)
    assert (ei.value.iface, ei.value.mode) == ("vb", "offload")
    assert "driver 'veth'" in str(ei.value) and "cannot offload" in str(ei.value)
    with pytest.raises(AttachError, match="no interface 'nfa-nope'") as ei:
        attach_xdp(xdp, "nfa-nope", netns=pair.ns)
    assert ei.value.iface == "nfa-nope"
    with pytest.raises(AttachError, match="is not an XDP program"):
        attach_xdp(progs.programs["tc_a"], "vb", netns=pair.ns)
    with pytest.raises(AttachError, match="unknown XDP mode"):
        attach_xdp(xdp, "vb", mode="turbo", netns=pair.ns)
    assert query("vb", netns=pair.ns)["xdp"] == []


def test_auto_falls_back_to_generic_where_the_driver_has_no_native_xdp(pair, progs):
    with pair.ipr() as ipr:            # ifb has no XDP in its driver (no ndo_bpf)
        ipr.link("add", ifname="nfa-ifb", kind="ifb")
        ipr.link("set", index=ipr.link_lookup(ifname="nfa-ifb")[0], state="up")
    prog = progs.programs["xdp_a"]
    with pytest.raises(AttachError, match="native XDP is not supported by driver 'ifb'") as ei:
        attach_xdp(prog, "nfa-ifb", mode="native", netns=pair.ns, use_link=False)
    assert "Underlying driver does not support XDP in native mode" in ei.value.netlink_error
    with attach_xdp(prog, "nfa-ifb", mode="auto", netns=pair.ns) as link:
        assert link.mode == "generic"
        assert len(link.attempts) == 1 and "native XDP is not supported by driver 'ifb'" \
            in link.attempts[0]
        assert rtnl_xdp(pair, "nfa-ifb")["IFLA_XDP_SKB_PROG_ID"] == prog.id


def test_replace_takes_over_a_netlink_attachment_but_never_a_foreign_link(pair, progs):
    a, b = progs.programs["xdp_a"], progs.programs["xdp_b"]
    with pair.ipr() as ipr:                       # foreign, through netlink
        ipr.link("set", index=ipr.link_lookup(ifname="vb")[0],
                 xdp={"attrs": [("IFLA_XDP_FD", a.fileno()),
                                ("IFLA_XDP_FLAGS", abi.XDP_FLAGS_SKB_MODE)]})
    att = attach_xdp(b, "vb", mode="generic", netns=pair.ns, replace=True)
    try:
        assert att.via == "netlink" and "replacing a program attached through netlink" \
            in att.attempts[0]
        assert rtnl_xdp(pair, "vb")["IFLA_XDP_SKB_PROG_ID"] == b.id
        pair.send(2)
        assert count_reaches(progs, "xdp_b", 2) == 2 and hits(progs, "xdp_a") == 0
    finally:
        att.detach()
        att.close()
    with attach_xdp(a, "vb", mode="generic", netns=pair.ns) as theirs:   # a link now
        with pytest.raises(AttachError, match="held by a bpf_link is replaced only through"):
            attach_xdp(b, "vb", mode="generic", netns=pair.ns, replace=True)
        assert query("vb", netns=pair.ns)["xdp"][0]["link_id"] == theirs.id

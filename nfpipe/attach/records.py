"""Records of attachments that have no bpf_link to pin (netlink XDP, clsact filters):
what a later process needs to find one again, check it still runs our program,
and update or detach it."""
from __future__ import annotations

import os

from nfpipe.attach.base import Attachment
from nfpipe.attach.tc import ClsactFilter
from nfpipe.attach.xdp import NetlinkXdp
from nfpipe.errors import AttachError
from nfpipe.kernel import syscall as sc


def attachment_record(att: Attachment) -> dict:
    """What a later process needs to find *att* again (for netlink XDP and clsact, which
    have no bpf_link to pin): JSON-able."""
    rec = {"via": att.via, "kind": att.kind, "iface": att.iface, "ifindex": att.ifindex,
           "netns": None if att.netns is None else os.fspath(att.netns), "mode": att.mode,
           "direction": att.direction, "prog_id": att.prog_id}
    if isinstance(att, ClsactFilter):
        rec.update(priority=att.priority, handle=att.handle, created_qdisc=att.created_qdisc)
    return rec


def attachment_from_record(rec: dict, prog_id: int | None = None) -> Attachment:
    """The attachment *rec* describes, expected to run *prog_id* now (default: the
    recorded one).  Detach and update check that expectation in the kernel."""
    pid = prog_id if prog_id is not None else rec["prog_id"]
    common = dict(iface=rec["iface"], ifindex=rec["ifindex"], netns=rec["netns"],
                  mode=rec["mode"], prog_id=pid, prog_name="", direction=rec["direction"])
    if rec["via"] == "clsact":
        return ClsactFilter(priority=rec["priority"], handle=rec["handle"],
                            created_qdisc=rec["created_qdisc"], **common)
    if rec["via"] == "netlink":
        return NetlinkXdp(sc.prog_get_fd_by_id(pid), **common)
    raise AttachError(f"no way to rebuild a {rec['via']} attachment from a record; links "
                      f"are opened from their pin", iface=rec["iface"])

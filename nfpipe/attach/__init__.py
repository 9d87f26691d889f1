"""Attaching programs to interfaces (XDP and TC, through bpf links, netlink or clsact),
and finding out what an interface carries and can take.

Every attach function returns an ``Attachment``, a live object:

* ``Link`` owns a bpf_link fd (XDP link or tcx link).  ``close()`` gives the fd
  up: an unpinned link then disappears with its program attachment (the kernel
  frees a link with its last reference), a pinned one stays.  ``detach()``
  removes the attachment now (``BPF_LINK_DETACH``), whoever else holds the link.
* ``NetlinkXdp`` is an XDP program set through rtnetlink (``IFLA_XDP``): the
  attachment belongs to the interface, not to a fd, so ``close()`` leaves it in
  place and ``detach()`` removes it — only if our program is still the one
  attached (``XDP_FLAGS_REPLACE`` with ``IFLA_XDP_EXPECTED_FD``).
* ``ClsactFilter`` is a cls_bpf filter (direct-action) under a clsact qdisc;
  ``detach()`` deletes the filter if it still runs our program, and the clsact
  qdisc only if this attachment created it and no filter is left under it.

As a context manager an ``Attachment`` is scoped to the ``with`` block: a
``Link`` is closed (so gone unless pinned), a netlink or clsact attachment is
detached.

All of it runs in the interface's network namespace (``netns=``, see
``nfpipe.kernel.netns``); failures are ``AttachError`` naming the interface,
the mode, and the kernel's reason (netlink's extack message when there is one).

Modules: ``xdp`` (``attach_xdp``), ``tc`` (``attach_tc``), ``link`` (``Link``),
``query`` (what an interface carries), ``records`` (link-less attachments found
again by another process), ``target`` (``[NETNS:]IFACE``), ``features`` (what the
kernel can do), ``probe`` (``nfpipe probe``: the kernel and an interface),
``netdev`` (driver name, XDP feature bits).  See docs/attach.md.
"""
from nfpipe.attach.base import Attachment, detach, update
from nfpipe.attach.link import Link
from nfpipe.attach.query import DIRECTIONS, XDP_MODES, query
from nfpipe.attach.records import attachment_from_record, attachment_record
from nfpipe.attach.target import Target
from nfpipe.attach.tc import ClsactFilter, attach_tc
from nfpipe.attach.xdp import NetlinkXdp, attach_xdp
from nfpipe.kernel.netns import ifindex, in_netns

__all__ = ["Attachment", "Link", "NetlinkXdp", "ClsactFilter", "attach_xdp", "attach_tc",
           "query", "update", "detach", "attachment_record", "attachment_from_record",
           "Target", "XDP_MODES", "DIRECTIONS", "in_netns", "ifindex"]

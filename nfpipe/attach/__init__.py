"""Attaching programs to interfaces, and finding out what an interface can take.

* ``netns``: ``in_netns`` (this thread into a network namespace and back), ``ifindex``;
* ``links``: ``attach_xdp``, ``attach_tc``, ``query``, ``update``, ``detach`` and the live
  ``Attachment`` objects (``Link``, ``NetlinkXdp``, ``ClsactFilter``);
* ``probe``: kernel and interface capabilities (``nfpipe probe``);
* ``netdev``: driver name (ethtool) and XDP feature bits (netdev generic netlink);
* ``profiles``: the driver profiles of ``offload/profiles``.

See docs/attach.md.
"""
from nfpipe.attach.links import (Attachment, ClsactFilter, Link, NetlinkXdp, attach_tc,
                                 attach_xdp, detach, query, update)
from nfpipe.attach.netns import ifindex, in_netns

__all__ = ["Attachment", "Link", "NetlinkXdp", "ClsactFilter", "attach_xdp", "attach_tc",
           "query", "update", "detach", "in_netns", "ifindex"]

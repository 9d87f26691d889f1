"""in_netns moves only this thread, and always back."""
from __future__ import annotations

import os
import socket

import pytest

from nfpipe.errors import AttachError
from nfpipe.kernel.netns import ifindex, in_netns, netns_inode

pytestmark = pytest.mark.kernel


def test_in_netns_enters_and_returns(pair):
    home = netns_inode()
    with in_netns(pair.ns):
        inside = netns_inode()
        assert inside == os.stat(f"/var/run/netns/{pair.ns}").st_ino
        names = {n for _, n in socket.if_nameindex()}
        assert {"va", "vb", "lo"} <= names
    assert netns_inode() == home != inside
    with pytest.raises(RuntimeError), in_netns(pair.ns):
        raise RuntimeError("boom")
    assert netns_inode() == home


def test_ifindex_names_the_namespace(pair):
    assert ifindex("va", pair.ns) > 1
    with pytest.raises(AttachError, match=f"no interface 'nfa-none' in network namespace "
                                          f"'{pair.ns}'"):
        ifindex("nfa-none", pair.ns)
    with pytest.raises(AttachError, match="does not exist"):
        ifindex("va", "nfa-no-such-ns")

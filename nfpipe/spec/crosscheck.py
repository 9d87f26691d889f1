"""What two nodes' configurations do to each other that neither does alone.

Checked once the nodes and edges are read (``spec.pipeline``): each finding is a
warning, not a problem. The pipeline runs as written, but probably not as meant.

* **A VIP that a NAT after the load balancer masquerades.** The LB gives a backend's
  reply the VIP back as its source. If the VIP lies inside a network that a NAT later
  on the path masquerades, that NAT then rewrites the source again, to its external
  address and a port of its own. The client gets its answer from an address and port
  it never wrote to, and drops it.

NFs take part through two methods of ``NetworkFunction``: ``reply_sources()`` (the
addresses it writes back as a reply's source) and ``masquerades()`` (the networks
whose sources it rewrites). Each defaults to none.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nfpipe.spec.pipeline import EdgeSpec, NodeSpec


def downstream(nodes: Mapping[str, NodeSpec], edges: Iterable[EdgeSpec]) -> dict[str, set[str]]:
    """For each node, the nodes a packet may reach after it (following wired ports)."""
    succ: dict[str, set[str]] = {nid: set() for nid in nodes}
    for e in edges:
        if not e.is_verdict and e.src in succ and e.target in nodes:
            succ[e.src].add(e.target)
    out: dict[str, set[str]] = {}
    for nid in nodes:
        seen: set[str] = set()
        todo = list(succ[nid])
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(succ[n])
        out[nid] = seen
    return out


def address_conflicts(nodes: Mapping[str, NodeSpec],
                      edges: Iterable[EdgeSpec]) -> list[tuple[str, tuple, str]]:
    """(node id, path inside its config, why) for each reply source that a node after
    it masquerades."""
    after = downstream(nodes, edges)
    out = []
    for nid, node in nodes.items():
        if node.impl is None:
            continue
        for sub, label, addr in node.impl.reply_sources():
            for other in sorted(after[nid]):
                impl = nodes[other].impl
                if impl is None:
                    continue
                for net, rewritten in impl.masquerades():
                    if addr.version == net.version and addr in net:
                        out.append((nid, sub, (
                            f"VIP {label} lies inside {net}, which node '{other}' after it "
                            f"masquerades: its backends' replies would leave from "
                            f"{rewritten}, not from the VIP, and clients drop them; put "
                            f"the VIP outside the masqueraded networks")))
    return out

"""What two nodes' configurations do to each other that neither does alone.

``warnings_of(spec)`` follows the pipeline's graph (``build_graph``: only edges that
are valid): each finding is a warning at the value that causes it, not a problem.
The pipeline runs as written, but probably not as meant.

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

from nfpipe.graph.validate import build_graph
from nfpipe.spec.pipeline import PipelineSpec, Problem


def warnings_of(spec: PipelineSpec) -> list[Problem]:
    """Each reply source of a node that a node after it masquerades."""
    import networkx as nx  # here: see validate.build_graph

    sources = {nid: n.impl.reply_sources() for nid, n in spec.nodes.items()
               if n.impl is not None}
    if not any(sources.values()):
        return []
    g = build_graph(spec)
    out = []
    for nid, found in sources.items():
        node = spec.nodes[nid]
        after = sorted(n for n in nx.descendants(g, nid) if n in spec.nodes)
        for sub, label, addr in found:
            for other in after:
                impl = spec.nodes[other].impl
                for net, rewritten in impl.masquerades() if impl is not None else ():
                    if addr.version == net.version and addr in net:
                        pos = spec.doc.at(node.path + ("config",) + sub) if spec.doc \
                            else node.pos
                        out.append(Problem(pos, (
                            f"node '{nid}' ({node.nf}): VIP {label} lies inside {net}, "
                            f"which node '{other}' after it masquerades: its backends' "
                            f"replies would leave from {rewritten}, not from the VIP, and "
                            f"clients drop them; put the VIP outside the masqueraded "
                            f"networks"), nid))
    return out

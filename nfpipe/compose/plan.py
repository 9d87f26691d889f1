"""The plan of a validated pipeline: node order, program-array slots, port tables, linking.

Tail-call linking: every node is its own program (``nfpipe/entry.h`` around the
NF), built as instance ``<node id>``; the node with slot *i* sits in slot *i* of
the shared program array ``nfp_jmp``; each node's port table (a ``.rodata``
array) holds, per port, the slot of the node it leads to or the verdict that
ends the pipeline.  Fused linking (``nfpipe.compose.fused``) follows the same
port targets with gotos inside one program.

Both count every node's outcomes in ``nfp_stats`` (row = slot, column = outcome
slot), which is where per-node and per-edge counters come from.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nfpipe.errors import GraphError
from nfpipe.graph import check, linking_for
from nfpipe.nfabi import MAX_NODES, MAX_PORTS, VERDICT_NAMES, Verdict
from nfpipe.spec.pipeline import PipelineSpec


@dataclass(frozen=True)
class PortTarget:
    """Where one port leads: a node (its slot) or a verdict."""

    port: str
    node: str | None = None
    slot: int | None = None
    verdict: str | None = None
    redirect_iface: str | None = None
    wired: bool = True              # False: a port the NF cannot use, left unwired

    def describe(self) -> str:
        if self.node is not None:
            return f"{self.node} (slot {self.slot})"
        return f"redirect:{self.redirect_iface}" if self.redirect_iface else self.verdict


@dataclass
class NodePlan:
    id: str
    index: int                      # slot in nfp_jmp and row in nfp_stats
    nf: str
    source: Path
    ports: tuple[str, ...]
    targets: list[PortTarget]
    constants: dict[str, object]    # the NF's own, unprefixed
    is_entry: bool
    # build-time defines (NetworkFunction.build_defines): config compiled into the code
    defines: dict[str, str] = field(default_factory=dict)


@dataclass
class Plan:
    spec: PipelineSpec
    linking: str                    # "tailcall" or "fused"
    hook: str                       # "xdp" or "tc"
    order: list[NodePlan]
    miss_verdict: str = "drop"

    @property
    def nodes(self) -> dict[str, NodePlan]:
        return {n.id: n for n in self.order}

    def port_table(self, node: NodePlan, ifindexes: dict[str, int] | None = None):
        """The node's nfp_ports and nfp_redirect arrays."""
        ports, redirect = [int(Verdict.ABORTED)] * MAX_PORTS, [0] * MAX_PORTS
        for i, t in enumerate(node.targets):
            if t.node is not None:
                ports[i] = t.slot
            else:
                ports[i] = int(VERDICT_NAMES[t.verdict])
                if t.redirect_iface:
                    redirect[i] = (ifindexes or {}).get(t.redirect_iface, 0)
        return ports, redirect

    def to_dict(self) -> dict:
        return {
            "pipeline": self.spec.name, "hook": self.spec.hook, "linking": self.linking,
            "entry": self.spec.entry, "miss_verdict": self.miss_verdict,
            "nodes": [{"id": n.id, "nf": n.nf, "slot": n.index, "entry": n.is_entry,
                       "ports": {t.port: t.describe() for t in n.targets if t.wired},
                       "constants": n.constants} for n in self.order],
        }

    def dot(self) -> str:
        """The graph as Graphviz DOT."""
        lines = [f'digraph "{self.spec.name}" {{', "  rankdir=LR;",
                 '  node [shape=box, fontname="monospace"];']
        verdicts = set()
        for n in self.order:
            label = f"{n.id}\\n{Path(n.nf).name if n.nf.endswith('.c') else n.nf}"
            if self.linking == "tailcall":
                label += f"\\nslot {n.index}"
            style = ", style=bold" if n.is_entry else ""
            lines.append(f'  "{n.id}" [label="{label}"{style}];')
            for t in (t for t in n.targets if t.wired):
                dst = t.node if t.node is not None else f"verdict:{t.describe()}"
                if t.node is None:
                    verdicts.add(dst)
                lines.append(f'  "{n.id}" -> "{dst}" [label="{t.port}"];')
        for v in sorted(verdicts):
            lines.append(f'  "{v}" [shape=ellipse, label="{v.split(":", 1)[1]}"];')
        lines.append("}")
        return "\n".join(lines) + "\n"


def make_plan(spec: PipelineSpec, *, linking: str | None = None, mode: str | None = None,
              miss_verdict: str = "drop", slots: dict[str, int] | None = None) -> Plan:
    """Validate *spec* (GraphError listing every problem) and lay it out.

    Slots follow the order (entry first) unless *slots* gives the slots of a running
    pipeline: an update keeps every surviving node in its slot (its stats row and
    program-array entry stay put) and gives new nodes slots the running pipeline
    does not use, so its in-flight packets never count into a new node's row.
    *mode*: an attach mode forced on the command line (``offload`` makes "auto"
    linking fused, as ``mode: offload`` in the file does)."""
    import networkx as nx  # here: see graph.validate.build_graph

    link = linking_for(spec, linking, mode)
    g = check(spec, link)
    reach = nx.descendants(g, spec.entry) | {spec.entry}
    nodes_only = g.subgraph([n for n in spec.nodes if n in reach])
    order_ids = [spec.entry] + [n for n in nx.lexicographical_topological_sort(
        nodes_only, key=lambda n: list(spec.nodes).index(n)) if n != spec.entry]
    if len(order_ids) > MAX_NODES:
        raise GraphError(f"{spec.file}: {len(order_ids)} nodes; a pipeline has at most "
                         f"{MAX_NODES}")
    slot = assign_slots(order_ids, slots)
    edges = {(e.src, spec.nodes[e.src].ports[spec.nodes[e.src].port_index(e.port)]): e
             for e in spec.edges}
    order = []
    for nid in order_ids:
        node = spec.nodes[nid]
        targets = []
        for port in node.ports:
            e = edges.get((nid, port))
            if e is None:                 # a port the NF cannot use: left unwired
                targets.append(PortTarget(port, verdict="aborted", wired=False))
            elif e.is_verdict:
                targets.append(PortTarget(port, verdict=e.verdict, redirect_iface=e.redirect_iface))
            else:
                targets.append(PortTarget(port, node=e.target, slot=slot[e.target]))
        order.append(NodePlan(id=nid, index=slot[nid], nf=node.nf, source=node.source,
                              ports=node.ports, targets=targets,
                              constants=dict(node.impl.constants()) if node.impl else {},
                              is_entry=nid == spec.entry,
                              defines=dict(node.impl.build_defines()) if node.impl else {}))
    return Plan(spec=spec, linking=link, hook=spec.nf_hook, order=order,
                miss_verdict=miss_verdict)


def assign_slots(order_ids: list[str], prev: dict[str, int] | None) -> dict[str, int]:
    """Slot of each node: its previous one if it had one, else the lowest slot free in
    both plans (last resort: one the previous plan used for a node now gone)."""
    if not prev:
        return {nid: i for i, nid in enumerate(order_ids)}
    slot = {nid: prev[nid] for nid in order_ids if nid in prev}
    taken = set(slot.values())
    free = sorted((i for i in range(MAX_NODES) if i not in taken),
                  key=lambda i: (i in prev.values(), i))
    it = iter(free)
    for nid in order_ids:
        if nid not in slot:
            slot[nid] = next(it)
    return slot

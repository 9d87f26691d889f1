"""Build a validated pipeline: the plan (order, slots, port tables) and its objects.

Tail-call linking: every node is its own program (``nfpipe/entry.h`` around the
NF), built as instance ``<node id>``; node *i* of the plan's order sits in slot
*i* of the shared program array ``nfp_jmp``; each node's port table (a
``.rodata`` array) holds, per port, the slot of the node it leads to or the
verdict that ends the pipeline.

Fused linking: one C file includes every node's NF as its own instance and a
generated program calls each node's ``process`` in turn, following the edges
with gotos; no tail calls, one program (what hardware offload needs, and
fewer indirect jumps).

Both count every node's outcomes in ``nfp_stats`` (node index × outcome slot),
which is where per-node and per-edge counters come from.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx

from nfpipe.build.nf import build_nf, hook_define, write_generated
from nfpipe.build.toolchain import compile as cc_compile
from nfpipe.catalog.base import MAX_PORTS, Verdict
from nfpipe.graph import check, linking_for
from nfpipe.load.spec import ObjectSpec
from nfpipe.spec.pipeline import PipelineSpec

VERDICT_CODES = {"pass": Verdict.PASS, "drop": Verdict.DROP, "tx": Verdict.TX,
                 "redirect": Verdict.REDIRECT, "aborted": Verdict.ABORTED}
MAX_NODES = 64          # NFP_MAX_NODES in pipeline.h


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
                ports[i] = int(VERDICT_CODES[t.verdict])
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


def make_plan(spec: PipelineSpec, *, linking: str | None = None,
              miss_verdict: str = "drop", slots: dict[str, int] | None = None) -> Plan:
    """Validate *spec* (GraphError listing every problem) and lay it out.

    Slots follow the order (entry first) unless *slots* gives the slots of a running
    pipeline: an update keeps every surviving node in its slot (its stats row and
    program-array entry stay put) and gives new nodes slots the running pipeline
    does not use, so its in-flight packets never count into a new node's row."""
    g = check(spec)
    link = linking or linking_for(spec)
    reach = nx.descendants(g, spec.entry) | {spec.entry}
    nodes_only = g.subgraph([n for n in spec.nodes if n in reach])
    order_ids = [spec.entry] + [n for n in nx.lexicographical_topological_sort(
        nodes_only, key=lambda n: list(spec.nodes).index(n)) if n != spec.entry]
    if len(order_ids) > MAX_NODES:
        from nfpipe.errors import GraphError
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
                              is_entry=nid == spec.entry))
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


@dataclass
class Build:
    """What a plan compiles to: one ObjectSpec per node (tail calls) or one in all (fused)."""

    plan: Plan
    objects: dict[str, ObjectSpec] = field(default_factory=dict)   # node id or "<fused>"
    fused_style: str = "inline"     # or "calls": nodes behind global functions

    def fused_with_calls(self) -> ObjectSpec:
        """The fused program with a global-function boundary per node (see fused_source)."""
        self.objects[FUSED] = ObjectSpec.from_file(_build_fused(self.plan, boundaries=True))
        self.fused_style = "calls"
        return self.objects[FUSED]


FUSED = "<fused>"


def build(plan: Plan) -> Build:
    out = Build(plan)
    if plan.linking == "tailcall":
        for n in plan.order:
            path = build_nf(n.source, hook=plan.hook, instance=n.id, mode="tailcall")
            out.objects[n.id] = ObjectSpec.from_file(path)
    else:
        out.objects[FUSED] = ObjectSpec.from_file(_build_fused(plan))
    return out


def fused_program_name(plan: Plan) -> str:
    return "nfp_pipeline"


def fused_source(plan: Plan, *, boundaries: bool = False) -> str:
    """The C text of the fused pipeline program.

    Nodes are inlined into one function.  With *boundaries*, each node instead
    runs behind a global function, which the verifier checks once on its own
    rather than once per path reaching it: verifying then costs the sum of the
    nodes, not their product, at a few ns per node at run time.  The loader uses
    that variant when the inlined program is too large for the verifier.
    """
    lines = ["/* generated by nfpipe: the whole pipeline as one program */",
             f"#define {hook_define(plan.hook)} 1", "#define NFP_FUSED 1"]
    if plan.spec.mode == "offload":
        lines.append("#define NFP_OFFLOAD 1")
    for n in plan.order:
        lines += [f"#define NFP_INSTANCE {n.id}", f'#include "{n.source}"', "#undef NFP_INSTANCE"]
    lines += ["#include <nfpipe/pipeline.h>", ""]
    for n in plan.order:
        for i, t in enumerate(n.targets):
            if t.redirect_iface:
                lines.append(f"volatile const __u32 nfp_redirect_{n.id}_{i} = 0;")
    ctx_type = "struct xdp_md" if plan.hook == "xdp" else "struct __sk_buff"
    for n in plan.order if boundaries else ():
        lines += ["", "__attribute__((noinline))",
                  f"int nfp_node_{n.id}({ctx_type} *hook, struct nfp_meta *meta)", "{",
                  "\tstruct nfp_ctx ctx;", "", "\tif (!meta)", "\t\treturn NFP_ABORTED;",
                  "\tnfp_ctx_init(&ctx, hook);", f"\treturn {n.id}__process(&ctx, meta);", "}"]
    lines += ["", 'SEC(NFP_HOOK_NAME)', f"int {fused_program_name(plan)}({ctx_type} *hook)", "{",
              "\tstruct nfp_ctx ctx;", "\tstruct nfp_meta meta = {};", "\t__u32 len;",
              "\tint r;", "", "\tnfp_ctx_init(&ctx, hook);", "\tlen = nfp_pkt_len(&ctx);"]
    targeted = {t.node for n in plan.order for t in n.targets if t.node is not None}
    for n in plan.order:
        if n.id in targeted:
            lines.append(f"node_{n.id}:")
        lines += ["\tmeta.hops++;", (f"\tr = nfp_node_{n.id}(hook, &meta);" if boundaries
                   else f"\tr = {n.id}__process(&ctx, &meta);"),
                  f"\tnfp_count({n.index}, nfp_outcome_slot(r), len);", "\tswitch (r) {"]
        for i, t in enumerate(n.targets):
            if t.node is not None:
                lines.append(f"\tcase {i}: goto node_{t.node};")
            else:
                code = VERDICT_CODES[t.verdict].name
                if t.redirect_iface:
                    lines.append(f"\tcase {i}: meta.redirect_ifindex = nfp_redirect_{n.id}_{i}; "
                                 f"r = NFP_{code}; goto done;")
                else:
                    lines.append(f"\tcase {i}: r = NFP_{code}; goto done;")
        lines += ["\tdefault:", "\t\tif (r >= 0 || r < NFP_VERDICT_MIN)",
                  "\t\t\tr = NFP_ABORTED;    /* a port the NF does not have */",
                  "\t\tgoto done;", "\t}"]
    lines += ["done:", "\treturn nfp_hook_verdict(&ctx, &meta, r);", "}", "",
              'char LICENSE[] SEC("license") = "Dual BSD/GPL";', ""]
    return "\n".join(lines)


def _build_fused(plan: Plan, boundaries: bool = False) -> Path:
    stem = f"fused-{plan.spec.name}-{plan.hook}" + ("-calls" if boundaries else "")
    path = write_generated(stem, fused_source(plan, boundaries=boundaries))
    dirs = sorted({str(n.source.parent) for n in plan.order})
    return cc_compile(path, include_dirs=dirs)

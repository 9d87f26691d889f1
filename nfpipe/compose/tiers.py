"""Tiered placement: the longest offloadable prefix of a pipeline on the NIC, the
whole pipeline at native XDP on the same interface behind it.

When the whole pipeline cannot be offloaded (``compose.offload``), its first nodes
in topological order, up to the first one a problem names, may still run on the
NIC.  The NIC's program (the offload build of those nodes only) ends each edge
that leaves them with a hand-over: a 32-byte record in the XDP metadata area
(``nfp_handover`` in pipeline.h: the node to go on at and the packet metadata
the nodes wrote), and XDP_PASS.  The host's program is the whole pipeline, which
starts with ``nfp_resume``: a packet with a record goes on at its node, the
metadata restored (the nodes parse the packet again), one without runs from the
entry, so the host alone still runs the pipeline.  Verdicts the NIC's nodes
reach (drop, tx, pass) end there.  A packet passed by the NIC's nodes and one
handed over differ by the record.

Not possible when a problem is about no one node (global data, the program's
size), when the entry node cannot be offloaded, or when the NIC's program cannot
write the metadata area (the profile has no ``bpf_xdp_adjust_meta``: nfp).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from nfpipe.compose.build import FUSED, Build
from nfpipe.compose.fused import compile_fused
from nfpipe.compose.offload import DEFAULT_PROFILE, OffloadBuild, offload_build
from nfpipe.loader.objspec import ObjectSpec


@dataclass
class TieredBuild:
    nic_nodes: list[str]            # the prefix the NIC runs, in order
    resume: list[str]               # the nodes packets are handed over to
    nic: OffloadBuild               # the NIC's program (offload build of nic_nodes)
    host: Build                     # the host's program: the whole pipeline, resuming
    decisions: list[str] = field(default_factory=list)


def tiered_build(build: Build, profile_name: str = DEFAULT_PROFILE,
                 full: OffloadBuild | None = None) -> tuple[TieredBuild | None, str]:
    """The two tiers of *build* for *profile_name*, or None and why not.  *full* is
    the offload build of the whole pipeline, when the caller has it."""
    plan = build.plan
    if plan.hook != "xdp" or plan.linking != "fused":
        return None, "tiers need a fused XDP pipeline"
    full = full or offload_build(build, profile_name)
    if full.ok:
        return None, "the whole pipeline fits the NIC: no tiers needed"
    if full.spec is None:
        return None, "; ".join(full.problems)
    if full.pipeline_problems:
        return None, ("a problem is about the whole program, not one node: "
                      + "; ".join(p for p in full.problems
                                  if not any(f"node '{n}'" in p for n in full.bad_nodes)))
    prefix = []
    for n in plan.order:
        if n.id in full.bad_nodes:
            break
        prefix.append(n.id)
    if not prefix:
        return None, f"the entry node '{plan.order[0].id}' cannot be offloaded"
    resume = sorted({t.node for nid in prefix for t in plan.nodes[nid].targets
                     if t.node is not None and t.node not in prefix})
    nic = offload_build(build, profile_name, nic=prefix)
    if not nic.ok:
        return None, "the NIC's part does not fit: " + "; ".join(nic.problems)
    host = Build(plan, {FUSED: ObjectSpec.from_file(compile_fused(plan, resume=resume))})
    first_bad = plan.order[len(prefix)].id
    decisions = [f"tiers: yes - nodes {', '.join(prefix)} on the NIC ({profile_name}); "
                 f"from node '{first_bad}' on at native XDP (it cannot be offloaded)",
                 f"  hand-over: XDP metadata area, to node(s) {', '.join(resume)}"]
    return TieredBuild(prefix, resume, nic, host, decisions + [
        f"  {d}" for d in nic.decisions]), "ok"

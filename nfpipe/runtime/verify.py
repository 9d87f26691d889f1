"""Is a pipeline deployable?  ``verify(spec)`` compiles every node and loads the whole
pipeline through the kernel's verifier, attaching nothing, and reports what fails as
``Problem``s at the node's place in the pipeline file: what ``nfpipe validate`` adds
to the file and graph checks, so that "valid" means "deploys".

Each node of a tail-call pipeline is compiled on its own, so every node that does not
compile is reported, not only the first.  Loading needs CAP_BPF: without it the
result says the pipeline was compiled but not verified, and why.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from nfpipe.compose import FUSED, Build, make_plan
from nfpipe.compose.build import read_spec
from nfpipe.compose.fused import compile_fused
from nfpipe.compose.nodes import build_nf
from nfpipe.errors import CompileError, KernelError, VerifierError
from nfpipe.runtime.pipeline import Pipeline
from nfpipe.spec import PipelineSpec
from nfpipe.yamldoc import Pos, Problem


@dataclass
class Verification:
    linking: str
    problems: list[Problem] = field(default_factory=list)
    compiled: bool = False
    verified: bool = False
    not_verified: str | None = None          # why the verifier was not asked

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(spec: PipelineSpec, *, linking: str | None = None,
           load: bool = True) -> Verification:
    """Compile (and with *load*, verify) *spec* as it would deploy; *spec* must have
    passed the graph checks."""
    plan = make_plan(spec, linking=linking)
    out = Verification(plan.linking)
    built = Build(plan)
    if plan.linking == "tailcall":
        for n in plan.order:
            try:
                path = build_nf(n.source, hook=plan.hook, instance=n.id, mode="tailcall",
                                defines=n.defines)
                built.objects[n.id] = read_spec(path)
            except CompileError as exc:
                out.problems.append(Problem(_pos(spec, n.id), f"node '{n.id}' does not "
                                                             f"compile: {exc}", n.id))
    else:
        try:
            built.objects[FUSED] = read_spec(compile_fused(plan))
        except CompileError as exc:
            out.problems.append(Problem(_pos(spec, _node_of(spec, exc.source)),
                                        f"the fused pipeline does not compile: {exc}"))
    if out.problems:
        return out
    out.compiled = True
    if not load:
        out.not_verified = "not asked to load it"
        return out
    if os.geteuid() != 0:
        out.not_verified = "loading programs into the verifier needs root (CAP_BPF)"
        return out
    try:
        with Pipeline.load(built):
            pass
        out.verified = True
    except VerifierError as exc:
        node = exc.node or (exc.program if exc.program in spec.nodes else None)
        out.problems.append(Problem(_pos(spec, node), f"the verifier rejects "
                                                      f"{f'node {node!r}' if node else 'it'}:"
                                                      f" {exc}", node))
    except KernelError as exc:
        out.problems.append(Problem(_pos(spec, None), f"the kernel refuses to load it: {exc}"))
    return out


def _node_of(spec: PipelineSpec, source: str | None) -> str | None:
    """The first node built from C file *source*."""
    if not source or not os.path.exists(source):
        return None
    for nid, n in spec.nodes.items():
        if n.source is not None and n.source.exists() and os.path.samefile(n.source, source):
            return nid
    return None


def _pos(spec: PipelineSpec, node: str | None) -> Pos:
    if node is not None and node in spec.nodes:
        return spec.nodes[node].pos
    return spec.doc.at(()) if spec.doc else Pos(spec.file, 1, 1)

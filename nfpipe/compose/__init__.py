"""Composing a validated pipeline: the plan (node order, program-array slots, port
tables, linking) and the build (one BPF object per node for tail calls, or one
generated, fused program), plus what hardware offload can take of it."""
from nfpipe.compose.build import FUSED, Build, build
from nfpipe.compose.plan import NodePlan, Plan, PortTarget, make_plan

__all__ = ["make_plan", "build", "Plan", "NodePlan", "PortTarget", "Build", "FUSED"]

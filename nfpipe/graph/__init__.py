"""The pipeline as a graph (networkx): validation and the build plan."""
from nfpipe.graph.validate import TAIL_CALL_LIMIT, build_graph, check, linking_for, problems_of

__all__ = ["build_graph", "problems_of", "check", "linking_for", "TAIL_CALL_LIMIT"]

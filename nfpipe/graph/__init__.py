"""The pipeline as a graph (networkx): validation, warnings and the build plan."""
from nfpipe.graph.crosscheck import warnings_of
from nfpipe.graph.validate import TAIL_CALL_LIMIT, build_graph, check, linking_for, problems_of

__all__ = ["build_graph", "problems_of", "check", "linking_for", "warnings_of",
           "TAIL_CALL_LIMIT"]

"""The network-function catalog: C data planes in bpf/ with their Python control planes.

``get(kind)`` returns the NetworkFunction class for a catalog name; ``KINDS``
lists them.  Each module documents its config keys and ports.
"""
from nfpipe.catalog.base import NetworkFunction, NodeMaps, SourceNF
from nfpipe.catalog.registry import KINDS, get, nf_class

__all__ = ["get", "nf_class", "KINDS", "NetworkFunction", "NodeMaps", "SourceNF"]

"""The catalog's names: ``get(kind)`` returns the NetworkFunction class of a catalog NF.

Each NF module is imported on first use, so that reading a pipeline that names
only the filter does not import the LB's control plane.
"""
from __future__ import annotations

import importlib

from nfpipe.catalog.base import SourceNF
from nfpipe.errors import SpecError

_CATALOG = {
    "filter": ("nfpipe.catalog.filter", "Filter"),
    "nat": ("nfpipe.catalog.nat", "Nat"),
    "lb": ("nfpipe.catalog.lb", "LoadBalancer"),
    "telemetry": ("nfpipe.catalog.telemetry", "Telemetry"),
}
KINDS = tuple(_CATALOG)


def get(kind: str):
    try:
        module, cls = _CATALOG[kind]
    except KeyError:
        raise SpecError(f"unknown network function '{kind}' (the catalog has: "
                        f"{', '.join(KINDS)}; or give the path of your own C file)") from None
    return getattr(importlib.import_module(module), cls)


def nf_class(nf: str):
    """The class of a node's ``nf:`` as a manifest records it: a catalog kind, or
    ``SourceNF`` for the path of a user's C file."""
    return get(nf) if nf in _CATALOG else SourceNF

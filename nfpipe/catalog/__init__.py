"""The network-function catalog: C data planes in bpf/ with their Python control planes.

``get(kind)`` returns the NetworkFunction class for a catalog name; ``KINDS``
lists them.  Each module documents its config keys and ports.
"""
from __future__ import annotations

import importlib

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

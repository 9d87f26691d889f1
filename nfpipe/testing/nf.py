"""One network function alone in the kernel: how its tests, its benchmarks and a user's
own tests run an NF on packets without a pipeline around it.

``load_nf(nf, hook)`` builds the NF in standalone mode (``nfpipe/entry.h``: the NF's
result is kept in ``.bss`` as ``nfp_last_result`` and turned into the hook's code,
ports passing), sizes and populates its maps from its config, and returns a
``LoadedNF`` whose ``run(packet)`` is one BPF_PROG_TEST_RUN::

    with load_nf(Filter({"rules": [...]}), "xdp") as nf:
        r = nf.run(Ether() / IP() / UDP(dport=53))
        assert r.verdict is Verdict.DROP
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nfpipe.catalog.base import NetworkFunction, NodeMaps
from nfpipe.compose.nodes import apply_map_sizes, build_nf
from nfpipe.loader.object import Object
from nfpipe.loader.objspec import ObjectSpec
from nfpipe.nfabi import TC_CODES, XDP_CODES, Verdict, prefixed


@dataclass(frozen=True)
class NFRun:
    """One packet through one NF: its raw result, the hook's code, the packet after."""

    result: int          # a port (>= 0) or a Verdict (< 0)
    retval: int          # what the hook saw (XDP_* / TC_ACT_*)
    data: bytes
    duration_ns: int

    @property
    def verdict(self) -> Verdict | None:
        return Verdict(self.result) if self.result < 0 else None

    @property
    def port(self) -> int | None:
        return self.result if self.result >= 0 else None


class LoadedNF:
    """One NF built alone (standalone mode) for one hook and loaded into the kernel."""

    def __init__(self, nf: NetworkFunction, hook: str, instance: str | None = None, *,
                 egress: bool = False):
        if egress and hook != "tc":
            raise ValueError("only a tc program runs at egress")
        self.nf = nf
        self.hook = hook
        self.instance = instance or nf.default_instance
        path = build_nf(nf.source, hook=hook, instance=self.instance, mode="standalone",
                        defines=nf.build_defines())
        spec = apply_map_sizes(ObjectSpec.from_file(path), self.instance, nf)
        constants = {prefixed(self.instance, k): v for k, v in nf.constants().items()}
        if egress:
            constants["nfp_hook_egress"] = 1     # as a tc-egress pipeline loads it
        self.obj = Object.load(spec, constants=constants)
        try:
            self.maps = NodeMaps(self.obj.maps, self.instance)
            nf.populate(self.maps)
            self.program = self.obj.programs[self.instance]
        except BaseException:
            self.obj.close()
            raise

    def run(self, packet: Any, repeat: int = 1) -> NFRun:
        res = self.program.test_run(bytes(packet), repeat=repeat)
        result = self.obj.maps[".bss"][0]["nfp_last_result"]
        return NFRun(result, res.retval, res.data, res.duration_ns)

    def expected_retval(self, result: int) -> int:
        """The hook code a standalone build returns for an NF result (ports pass)."""
        v = Verdict.PASS if result >= 0 else Verdict(result)
        return (XDP_CODES if self.hook == "xdp" else TC_CODES)[v]

    def close(self) -> None:
        self.obj.close()

    def __enter__(self) -> LoadedNF:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_nf(nf: NetworkFunction, hook: str, instance: str | None = None, *,
            egress: bool = False) -> LoadedNF:
    """Build *nf* alone for *hook* (standalone mode), load it and populate its maps;
    *egress* (tc only): as at tc-egress, where ``nfp_at_ingress()`` is false."""
    return LoadedNF(nf, hook, instance, egress=egress)

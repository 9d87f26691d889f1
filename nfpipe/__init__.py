"""nfpipe: a declared graph of eBPF network functions as one XDP or TC pipeline.

The common path takes one import::

    import nfpipe
    with nfpipe.Pipeline.from_file("examples/split-guard.yaml") as p:   # parse, check, build, load
        print(p.test_run(packet).retval, p.edge_counts())

(``nfpipe.deploy.deploy(file)`` attaches and pins one; ``nfpipe.load_nf(nf, hook)``
runs one network function alone) and the loader underneath::

    obj_path = nfpipe.compile("bpf/examples/xdp_count.c")
    spec = nfpipe.ObjectSpec.from_file(obj_path)
    with nfpipe.Object.load(spec) as obj:
        result = obj.programs["xdp_count"].test_run(packet_bytes, repeat=1)

Names are imported on first use, so ``import nfpipe`` (and the CLI's start-up)
stays cheap.  The packages, in the order data flows through them, are described
in docs/architecture.md.
"""
from nfpipe.errors import (
    AttachError,
    CompileError,
    DeployError,
    GraphError,
    KernelError,
    NfpipeError,
    SpecError,
    UsageError,
    VerifierError,
)

__version__ = "0.1.0"

_LAZY = {
    "compile": ("nfpipe.toolchain", "compile"),
    "ObjectSpec": ("nfpipe.loader", "ObjectSpec"),
    "MapSpec": ("nfpipe.loader", "MapSpec"),
    "ProgramSpec": ("nfpipe.loader", "ProgramSpec"),
    "Object": ("nfpipe.loader", "Object"),
    "Map": ("nfpipe.loader", "Map"),
    "Program": ("nfpipe.loader", "Program"),
    "PipelineSpec": ("nfpipe.spec", "PipelineSpec"),
    "Pipeline": ("nfpipe.runtime", "Pipeline"),
    "load_nf": ("nfpipe.testing", "load_nf"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nfpipe' has no attribute {name!r}")


__all__ = [
    "NfpipeError", "SpecError", "GraphError", "CompileError", "KernelError", "VerifierError",
    "AttachError", "DeployError", "UsageError", *_LAZY,
]

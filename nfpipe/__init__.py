"""nfpipe: a declared graph of eBPF network functions as one XDP or TC pipeline.

The public API of the foundation layer::

    import nfpipe
    obj_path = nfpipe.compile("bpf/examples/xdp_count.c")
    spec = nfpipe.ObjectSpec.from_file(obj_path)
    with nfpipe.Object.load(spec) as obj:
        result = obj.programs["xdp_count"].test_run(packet_bytes, repeat=1)
        print(result.retval, obj.maps["counters"][0])
"""
from nfpipe.errors import (AttachError, CompileError, GraphError, KernelError, NfpipeError,
                           SpecError, VerifierError)

__version__ = "0.1.0"

_LAZY = {
    "compile": ("nfpipe.build.toolchain", "compile"),
    "ObjectSpec": ("nfpipe.load.spec", "ObjectSpec"),
    "MapSpec": ("nfpipe.load.spec", "MapSpec"),
    "ProgramSpec": ("nfpipe.load.spec", "ProgramSpec"),
    "Object": ("nfpipe.load.object", "Object"),
    "Map": ("nfpipe.load.maps", "Map"),
    "Program": ("nfpipe.load.program", "Program"),
}


def __getattr__(name: str):
    # Imported on first use so that `import nfpipe` (and the CLI's start-up) stays cheap.
    if name in _LAZY:
        import importlib
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nfpipe' has no attribute {name!r}")


__all__ = [
    "NfpipeError", "SpecError", "GraphError", "CompileError", "KernelError", "VerifierError",
    "AttachError", *_LAZY,
]

"""nfpipe: a declared graph of eBPF network functions as one XDP or TC pipeline."""
from nfpipe.errors import (AttachError, CompileError, GraphError, KernelError, NfpipeError,
                           SpecError, VerifierError)

__version__ = "0.1.0"

__all__ = [
    "NfpipeError", "SpecError", "GraphError", "CompileError", "KernelError", "VerifierError",
    "AttachError",
]

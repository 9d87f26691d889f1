"""Testing network functions and pipelines in the kernel: for nfpipe's own tests and for
users testing theirs."""
from nfpipe.testing.nf import LoadedNF, NFRun, load_nf

__all__ = ["load_nf", "LoadedNF", "NFRun"]

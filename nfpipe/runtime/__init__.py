"""A built pipeline live in the kernel (loaded, not attached): ``Pipeline`` owns every
program and map of it, runs it with BPF_PROG_TEST_RUN and reads its counters."""
from nfpipe.runtime.pipeline import Counter, Pipeline, load_fingerprint, node_stats

__all__ = ["Pipeline", "Counter", "node_stats", "load_fingerprint"]

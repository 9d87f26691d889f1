"""``nfpipe bench``: what nfpipe costs, as ratios against the alternatives in one run.

``kernel``: ns/packet in the kernel with BPF_PROG_TEST_RUN (NFs, linkings, the seeds'
firewall beside a hand-written program).  ``live``: live frames on a veth into a
device under test, nfpipe beside a hand-written program, nftables and iptables.
"""
from nfpipe.bench.kernel import (
    CASES,
    EDGE_PACKETS,
    FW_PACKETS,
    Result,
    compare,
    compare_edge,
    compare_hops,
    run,
)
from nfpipe.bench.live import LiveResult, run_live

__all__ = ["CASES", "EDGE_PACKETS", "FW_PACKETS", "LiveResult", "Result", "compare",
           "compare_edge", "compare_hops", "run", "run_live"]

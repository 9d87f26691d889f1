"""nfpipe's own bpf() syscall layer: no libbpf, just ctypes.

``abi``      every constant and struct layout of the bpf() syscall (checked against the UAPI header)
``syscall``  one thin wrapper per bpf() command, ``Fd`` for the descriptors they return
``bpffs``    the BPF filesystem: mount, pin, open pins, unpin
"""
from nfpipe.kernel import abi, bpffs, syscall
from nfpipe.kernel.syscall import BtfLoadError, Fd, ProgLoadError, TestRunResult

__all__ = ["abi", "syscall", "bpffs", "Fd", "ProgLoadError", "BtfLoadError", "TestRunResult"]

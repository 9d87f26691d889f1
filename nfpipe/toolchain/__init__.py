"""The C-to-BPF toolchain: compiler discovery, compiling with a content-addressed cache,
and the include set every compiler sees (nfpipe's headers, the kernel UAPI headers)."""
from nfpipe.toolchain.compiler import (
                                       Compiler,
                                       bpf_include_dir,
                                       cache_dir,
                                       compile,
                                       describe,
                                       find_compiler,
                                       uapi_include_dirs,
)

__all__ = ["Compiler", "find_compiler", "compile", "describe", "bpf_include_dir",
           "uapi_include_dirs", "cache_dir"]

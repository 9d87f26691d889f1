"""The C-to-BPF toolchain: compiler discovery, compiling with a content-addressed cache,
and the include set every compiler sees (nfpipe's headers, the kernel UAPI headers)."""
from nfpipe.toolchain.compiler import (
                                       TESTED_CLANG,
                                       Compiler,
                                       bpf_include_dir,
                                       cache_dir,
                                       cache_enabled,
                                       compile,
                                       describe,
                                       find_compiler,
                                       one_look_at_headers,
                                       spec_memo,
                                       uapi_include_dirs,
                                       wheel_clang,
)

__all__ = ["Compiler", "find_compiler", "wheel_clang", "compile", "describe",
           "bpf_include_dir", "uapi_include_dirs", "cache_dir", "cache_enabled", "spec_memo",
           "one_look_at_headers",
           "TESTED_CLANG"]

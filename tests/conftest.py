"""Fixtures shared by tests/ (the kernel-test gate is in the repository's conftest.py)."""
from __future__ import annotations

import pytest


@pytest.fixture
def compile_c(tmp_path):
    """Compile C source text to a BPF object with nfpipe's toolchain; returns its path."""
    from nfpipe.toolchain.compiler import compile as nf_compile

    def _compile(source: str, name: str = "prog", **kwargs):
        src = tmp_path / f"{name}.c"
        src.write_text(source)
        return nf_compile(src, **kwargs)

    return _compile

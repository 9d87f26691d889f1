"""BTF in pure Python, without libbpf.

* :class:`BTF` parses a raw ``.BTF`` blob (or ``/sys/kernel/btf/vmlinux``) into
  one dataclass per type (``btf.types[id]``), answers lookups (``find``,
  ``skip_mods``, ``size_of``, ``type_name``, ``datasec_vars``) and re-encodes
  edited types (``encode``).
* :class:`BTFExt` reads ``.BTF.ext``: func_info, line_info and CO-RE relocations
  per ELF section.
* :class:`Codec` turns map keys/values and global data into Python values and
  back (see :mod:`nfpipe.btf.codec`).
"""
from __future__ import annotations

from .btf import BTF
from .codec import Codec, CodecError
from .ext import BTFExt, CoreRelo, FuncInfo, LineInfo
from .types import *  # noqa: F403
from .types import __all__ as _types_all

__all__ = ["BTF", "BTFExt", "Codec", "CodecError", "FuncInfo", "LineInfo", "CoreRelo",
           *_types_all]

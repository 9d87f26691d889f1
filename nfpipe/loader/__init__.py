"""The loader: BPF ELF objects → specs (pure data) → live kernel objects.

``ObjectSpec.from_file`` reads an object with pyelftools and nfpipe.btf;
``Object.load`` creates its maps and programs through nfpipe.kernel.syscall.
"""
from nfpipe.loader.maps import Map
from nfpipe.loader.object import Object
from nfpipe.loader.objspec import ObjectSpec
from nfpipe.loader.program import Program, TestRunResult
from nfpipe.loader.specs import MapSpec, ProgramSpec, Reloc, VariableSpec

__all__ = ["ObjectSpec", "MapSpec", "ProgramSpec", "VariableSpec", "Reloc", "Object", "Map",
           "Program", "TestRunResult"]

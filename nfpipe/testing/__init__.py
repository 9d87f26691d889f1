"""Testing network functions and pipelines in the kernel: for nfpipe's own tests and for
users testing theirs.  The pytest fixtures built on these are in ``nfpipe.testing.plugin``
(loaded by pytest through the ``pytest11`` entry point; not imported here, so importing
``nfpipe.testing`` never needs pytest)."""
from nfpipe.testing.cases import (
    Case,
    CaseFile,
    CaseFileError,
    Expect,
    Step,
    default_cases_path,
    load_cases,
)
from nfpipe.testing.deployed import (
    Deployed,
    deploy_file,
    deployment,
    isolated_root,
    load_pipeline,
    nf_from,
    pinned_objects,
    pipeline_spec,
)
from nfpipe.testing.nf import LoadedNF, NFRun, load_nf
from nfpipe.testing.packets import FieldDiff, build_packet
from nfpipe.testing.runner import CaseResult, Failure, SuiteResult, run_cases
from nfpipe.testing.topology import Host, LeftBehind, TopologyRun, topology_run

__all__ = ["load_nf", "LoadedNF", "NFRun", "load_pipeline", "pipeline_spec", "nf_from",
           "deploy_file", "deployment", "Deployed", "isolated_root", "pinned_objects",
           "topology_run", "TopologyRun", "Host", "LeftBehind",
           # a pipeline's test-case file (<pipeline>.test.yaml) and running it
           "load_cases", "default_cases_path", "CaseFile", "Case", "Step", "Expect",
           "CaseFileError", "build_packet", "FieldDiff", "run_cases", "SuiteResult",
           "CaseResult", "Failure"]

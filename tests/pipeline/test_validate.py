"""`nfpipe validate` compiles every node and loads the pipeline through the verifier:
"valid" means the pipeline deploys, and a broken node is named at its place in the
file, with the user's own C file:line:col first."""
from __future__ import annotations

import contextlib
import json
import time
import uuid
from pathlib import Path

import pytest

from nfpipe.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
NF_BAD = ROOT / "tests" / "bpf" / "nf_bad.c"          # reads the packet unchecked
TTL_GUARD = ROOT / "bpf" / "examples" / "ttl_guard.c"
pytestmark = pytest.mark.kernel


def pipeline(tmp_path: Path, *nodes: tuple[str, str]) -> Path:
    lines = ["pipeline: v", "hook: xdp", "nodes:"]
    lines += [f"  - {{id: {nid}, nf: {nf}}}" for nid, nf in nodes]
    lines += ["edges:"]
    ids = [nid for nid, _ in nodes]
    lines += [f"  - {a} -> {b}" for a, b in zip(ids, ids[1:])] + [f"  - {ids[-1]} -> pass"]
    f = tmp_path / "v.yaml"
    f.write_text("\n".join(lines) + "\n")
    return f


def syntax_error(tmp_path: Path, name: str, line: int) -> Path:
    src = tmp_path / name
    body = ["#include <nfpipe/nf.h>"] + ["/* filler */"] * (line - 4) + [
        "static __always_inline int NFP_NAME(process)(struct nfp_ctx *ctx, struct nfp_meta *meta)",
        "{",
        "\treturn NFP_PORT(0) + ;",
        "}"]
    src.write_text("\n".join(body) + "\n")
    return src


def test_a_valid_pipeline_is_compiled_and_verified(tmp_path, capsys):
    f = pipeline(tmp_path, ("g", str(TTL_GUARD)))
    assert main(["validate", str(f)]) == 0
    assert "tailcall linking compiled and verified by the kernel" in capsys.readouterr().out
    assert main(["validate", str(f), "--linking", "fused", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["valid"] and out["compiled"] and out["verified"]


def test_every_node_that_does_not_compile_is_named_with_its_c_line(tmp_path, capsys):
    a = syntax_error(tmp_path, "a.c", 7)
    b = syntax_error(tmp_path, "b.c", 9)
    f = pipeline(tmp_path, ("first", str(a)), ("ok", str(TTL_GUARD)), ("second", str(b)))
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err.splitlines()
    first = next(ln for ln in err if "node 'first'" in ln)
    second = next(ln for ln in err if "node 'second'" in ln)
    # the problem sits at the node in the YAML, and names the user's file first
    assert first.startswith(f"{f}:4:5: node 'first' does not compile: {a}:7:")
    assert second.startswith(f"{f}:6:5: node 'second' does not compile: {b}:9:")
    assert not any("wrappers/" in ln for ln in err)        # not nfpipe's generated file
    assert err[-1] == f"{f}: 2 problems"


def test_fused_compile_error_names_the_node_and_the_file(tmp_path, capsys):
    a = syntax_error(tmp_path, "a.c", 5)
    f = pipeline(tmp_path, ("g", str(TTL_GUARD)), ("broken", str(a)))
    assert main(["validate", str(f), "--linking", "fused"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{f}:5:5: the fused pipeline does not compile: {a}:5:")


def test_a_node_the_verifier_rejects_is_invalid(tmp_path, capsys):
    f = pipeline(tmp_path, ("g", str(TTL_GUARD)), ("bad", str(NF_BAD)))
    assert main(["validate", str(f), "--no-build"]) == 0          # the file is fine
    capsys.readouterr()
    assert main(["validate", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{f}:5:5: the verifier rejects node 'bad':")
    assert "nf_bad.c:9" in err and "invalid access to packet" in err


def test_a_rejected_node_leaves_none_of_the_pipeline_in_the_kernel(tmp_path):
    """The nodes after the first load side by side: when one of them is rejected, every
    program and map of the others (loaded or still loading) is closed, and the error is
    the rejected node's."""
    from nfpipe.compose import build, make_plan
    from nfpipe.errors import VerifierError
    from nfpipe.kernel import syscall as sc
    from nfpipe.runtime import Pipeline
    from nfpipe.spec import PipelineSpec
    name = f"v{uuid.uuid4().hex[:6]}"
    f = pipeline(tmp_path, ("g1", str(TTL_GUARD)), ("g2", str(TTL_GUARD)),
                 ("bad", str(NF_BAD)), ("g3", str(TTL_GUARD)))
    f.write_text(f.read_text().replace("pipeline: v", f"pipeline: {name}"))
    built = build(make_plan(PipelineSpec.from_file(f), linking="tailcall"))

    def names(ids, get, info) -> list[str]:
        out = []
        for i in ids:
            with contextlib.suppress(OSError), get(i) as fd:
                out.append(bytes(info(fd).name).rstrip(b"\0").decode())
        return [n for n in out if n.startswith(name)]     # programs, shared maps

    def programs() -> list[str]:
        return names(sc.iter_prog_ids(), sc.prog_get_fd_by_id, sc.prog_info)

    # The maps are watched by id and opened only once they should be gone: a program
    # array's fd taken by id and closed while the kernel's deferred clear of that array
    # is still pending leaks a reference to it (Linux 6.18: prog_array_map_clear takes
    # one per call, its work item drops one per run), so opening maps while they go
    # would keep the very map this test checks.
    before = set(sc.iter_map_ids())
    assert programs() == []
    with pytest.raises(VerifierError) as exc:
        Pipeline.load(built)
    assert exc.value.program == "bad"
    assert programs() == []                 # closed: gone at once
    # A map goes when the last program using it is freed, after an RCU grace period
    # (which a busy machine makes long); one still referenced would never go.
    deadline = time.monotonic() + 60
    while set(sc.iter_map_ids()) - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert names(set(sc.iter_map_ids()) - before, sc.map_get_fd_by_id, sc.map_info) == []

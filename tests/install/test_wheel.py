"""nfpipe as a user gets it: the wheel built from this tree, installed into a fresh
virtual environment, run from an empty directory far from the source tree.  Every
file nfpipe reads at run time must come from the wheel."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.kernel            # deploys and runs the demo: root, BPF, netns


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(nfpipe command, environment) of a fresh venv with only the wheel installed."""
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist),
                    str(ROOT)], check=True, capture_output=True, timeout=600)
    (wheel,) = dist.glob("nfpipe-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    r = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    home = base / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NFPIPE_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"),
               PATH=f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}")
    return venv / "bin" / "nfpipe", env


def run(installed, cwd, *args, check=True):
    cmd, env = installed
    r = subprocess.run([str(cmd), *map(str, args)], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=600)
    if check:
        assert r.returncode == 0, f"nfpipe {' '.join(map(str, args))}:\n{r.stdout}\n{r.stderr}"
    return r


def test_runs_from_the_wheel_alone(installed, tmp_path):
    cmd, env = installed
    where = subprocess.run([str(cmd.parent / "python"), "-c",
                            "import nfpipe, nfpipe.resources as r; "
                            "print(nfpipe.__file__); print(r.installed()); print(r.bpf_dir())"],
                           cwd=tmp_path, env=env, capture_output=True, text=True,
                           check=True).stdout.split()
    assert "site-packages" in where[0] and not where[0].startswith(str(ROOT))
    assert where[1] == "True" and Path(where[2]).is_relative_to(Path(where[0]).parent)
    doctor = json.loads(run(installed, tmp_path, "doctor", "--json").stdout)
    assert doctor["kind"] == "zig" and doctor["tested"] and doctor["bpf_target_ok"]
    assert not any(d.startswith(str(ROOT)) for d in doctor["include_dirs"])


def test_examples_compile_validate_and_deploy_from_an_empty_directory(installed, tmp_path):
    run(installed, tmp_path, "examples", "--copy", "ex")
    assert {p.name for p in (tmp_path / "ex").iterdir()} >= {"firewall.yaml", "edge.yaml",
                                                             "nf"}
    for example in ("firewall", "edge", "split-guard", "tc-nat"):
        out = run(installed, tmp_path, "validate", f"ex/{example}.yaml").stdout
        assert "compiled and verified by the kernel" in out, out
    obj = run(installed, tmp_path, "compile", "filter", "--hook", "xdp", "-o", "f.o")
    assert (tmp_path / "f.o").is_file(), obj.stdout
    shown = json.loads(run(installed, tmp_path, "object", "show", "f.o", "--json").stdout)
    assert [p["name"] for p in shown["programs"]] == ["filter"]
    run(installed, tmp_path, "compile", "ex/nf/ttl_guard.c", "--hook", "tc", "-o", "t.o")

    run_id = f"w{uuid.uuid4().hex[:6]}"
    name = f"wheel{run_id}"
    fw = tmp_path / "fw.yaml"
    fw.write_text((tmp_path / "ex" / "firewall.yaml").read_text()
                  .replace("pipeline: firewall", f"pipeline: {name}"))
    up = json.loads(run(installed, tmp_path, "topo", "up", "two-hosts", "--run-id", run_id,
                        "--json").stdout)
    try:
        ns = up["hosts"]["dut"]["netns"]
        m = json.loads(run(installed, tmp_path, "deploy", fw, "--iface", f"{ns}:eth0",
                           "--json").stdout)
        assert m["pipeline"] == name and m["interfaces"][0]["prog_id"]
        st = json.loads(run(installed, tmp_path, "status", name, "--json").stdout)
        assert st[0]["state"] == "running"
    finally:
        run(installed, tmp_path, "destroy", name, check=False)
        run(installed, tmp_path, "topo", "down", "two-hosts", "--run-id", run_id)


def test_bench_compares_with_the_hand_written_program_installed(installed, tmp_path):
    out = json.loads(run(installed, tmp_path, "bench", "fw-udp", "--repeat", "100", "--rounds",
                         "1", "--json").stdout)
    assert [c["case"] for c in out["cases"]] == ["baseline", "fw-udp-handwritten",
                                                 "fw-udp-fused", "fw-udp-tailcall",
                                                 "fw-udp-linear"]
    [row] = out["firewall_vs_handwritten"]
    assert row["packet"] == "udp" and row["handwritten_ns"] > 0


def test_the_figure_asks_for_matplotlib_which_the_wheel_does_not_need(installed, tmp_path):
    r = run(installed, tmp_path, "bench", "chain1", "--png", "b.png", check=False)
    assert r.returncode == 2 and "pip install 'nfpipe[bench]'" in r.stderr, r.stderr
    assert "ns per packet" not in r.stdout           # refused before measuring
    assert not (tmp_path / "b.png").exists()


def test_the_demo_runs_installed(installed, tmp_path):
    report = json.loads(run(installed, tmp_path, "demo", "--json").stdout)
    assert list(report["traffic"].values()) == [True, False, False]
    assert report["web_after_update"] is True


def test_users_test_their_pipeline_with_the_wheel(installed, tmp_path):
    """Issue 14's "done when", as docs/testing.md and docs/pytest-plugin.md walk it with
    only the wheel: the shipped firewall.test.yaml passes under `nfpipe test`, the pytest
    file of docs/pytest-plugin.md passes through the plugin's fixtures, and both fail
    clearly once the web rule loses 443."""
    cmd, env = installed
    env = {**env, "CI": "true"}                    # the plugin must fail, never skip
    r = subprocess.run([str(cmd.parent / "pip"), "install", "-q", "pytest"], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    run(installed, tmp_path, "examples", "--copy", "ex", "firewall")
    fw = tmp_path / "ex" / "firewall.yaml"
    assert (tmp_path / "ex" / "firewall.test.yaml").is_file()
    run(installed, tmp_path, "test", "ex/firewall.yaml", "--junit", "junit.xml")
    junit = (tmp_path / "junit.xml").read_text()
    assert 'failures="0"' in junit and junit.count("<testcase ") >= 12

    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "firewall.yaml").write_text(fw.read_text())
    doc = (ROOT / "docs" / "pytest-plugin.md").read_text()
    (tests / "test_firewall.py").write_text(doc.split("```python\n", 1)[1].split("```", 1)[0])

    def pytest_run():
        return subprocess.run([str(cmd.parent / "python"), "-m", "pytest", "-q", "-ra",
                               "-p", "no:cacheprovider", "tests"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)

    r = pytest_run()
    assert r.returncode == 0 and "3 passed" in r.stdout, r.stdout + r.stderr

    opened = fw.read_text().replace("dport: [80, 443]", "dport: [80]")
    assert opened != fw.read_text()
    fw.write_text(opened)
    r = run(installed, tmp_path, "test", "ex/firewall.yaml", check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "firewall.test.yaml:" in r.stdout and "expected drop" in r.stdout, r.stdout

    (tests / "firewall.yaml").write_text(
        fw.read_text().replace("{action: drop, proto: udp, name: no UDP}",
                               "{action: drop, proto: udp, dport: 53, name: no DNS}"))
    r = pytest_run()
    assert r.returncode == 1 and "DID NOT RAISE" in r.stdout, r.stdout + r.stderr
    assert "1 failed, 2 passed" in r.stdout, r.stdout

"""nfpipe's pytest plugin as a user meets it: a test file of their own, beside their copy of
examples/firewall.yaml, run by pytest in a subprocess (``pytester``) that gets the plugin
from its ``pytest11`` entry point alone (no conftest), with the kernel doing everything:

* the passing file loads the firewall (nfpipe_pipeline), one filter alone (nfpipe_nf),
  and deploys the firewall onto a two-hosts topology (nfpipe_topology + nfpipe_deploy):
  TCP to an allowed port connects, UDP is dropped and counted;
* the same test with the UDP rule taken out of the user's file fails;
* after either run no namespace of theirs is listed by ``ip netns list`` and nothing of
  theirs is on bpffs: teardown ran, also for the failed test;
* the gate, in a process that really is unprivileged (a user namespace of its own:
  ``unshare --user``, where the euid is the overflow uid and bpf() is refused): tests
  using the fixtures or marked ``kernel`` skip with the reason, and fail with
  ``CI=true``; a test without either runs.

Every run of the user's tests gets its own run-id prefix (ini ``nfpipe_run_prefix``), so
the leftovers checks look at exactly the names that run could have made.
"""
from __future__ import annotations

import importlib.metadata
import os
import secrets
import shutil
import subprocess
import sys

import pytest

from nfpipe.resources import examples_dir
from nfpipe.toolchain.compiler import cache_dir

# In the module, not in tests/plugin/conftest.py: pytest refuses ``pytest_plugins`` in a
# conftest below the rootdir when the whole suite is collected.
pytest_plugins = ["pytester"]

USER_TESTS = '''
import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from nfpipe.nfabi import Verdict
from nfpipe.topo.traffic import serve_tcp_echo, serve_udp_echo, tcp_exchange, udp_exchange


def test_the_firewall_in_the_kernel(nfpipe_pipeline, nfpipe_nf):
    p = nfpipe_pipeline("firewall.yaml", linking="fused")
    assert p.test_run(Ether() / IP() / UDP(dport=53)).retval == 1      # XDP_DROP
    assert p.test_run(Ether() / IP() / TCP(dport=22)).retval == 2      # XDP_PASS
    assert p.edge_counts()["fw.out -> stats"] == 1
    nf = nfpipe_nf("filter", {"rules": [{"action": "drop", "proto": "udp"}]}, hook="tc")
    assert nf.run(Ether() / IP() / UDP(dport=53)).verdict is Verdict.DROP


def test_the_firewall_on_a_topology(nfpipe_topology, nfpipe_deploy):
    topo = nfpipe_topology("two-hosts")
    client, server = topo.host("client"), topo.host("server")
    fw = nfpipe_deploy(topo, "firewall.yaml", host="dut", ifname="eth0")
    assert client.address("eth0") in client.run(["ip", "-o", "addr", "show", "eth0"]).stdout
    addr = server.address("eth0")

    echo = server.start(serve_tcp_echo, addr, 8080)
    assert client.python(tcp_exchange, addr, 8080, b"hello") == b"hello"
    echo.result(timeout=20)

    server.start(serve_udp_echo, addr, 5000, 1, 5.0)
    with pytest.raises(TimeoutError):
        client.python(udp_exchange, addr, 5000, b"dropped?", 1.0)
    assert fw.stats()["fw"]["drop"]["packets"] >= 5     # resent every 0.1 s for 1 s


def test_an_inline_network(nfpipe_topology):
    topo = nfpipe_topology({
        "topology": "pair",
        "hosts": {"a": {"interfaces": {"eth0": {"addresses": ["10.9.0.1/24"]}}},
                  "b": {"interfaces": {"eth0": {"addresses": ["10.9.0.2/24"]}}}},
        "links": [{"endpoints": ["a:eth0", "b:eth0"]}],
    })
    out = topo.host("a").run(["ip", "-o", "-4", "addr", "show", "eth0"], check=True).stdout
    assert "10.9.0.1/24" in out and topo.host("b").netns in topo.namespaces
'''

GATED_TESTS = '''
import pytest


def test_uses_a_fixture(nfpipe_pipeline):
    nfpipe_pipeline("firewall.yaml")


@pytest.mark.kernel
def test_marked_kernel():
    pass


def test_needs_nothing():
    pass
'''


@pytest.fixture
def prefix() -> str:
    """The run-id prefix of one run of the user's tests: what its leftovers would carry."""
    return f"nfpt4{secrets.token_hex(3)}"


@pytest.fixture
def user_project(pytester, monkeypatch, prefix):
    """A user's directory: their copy of the firewall example, an ini naming the run-id
    prefix, and the object cache of this session (pytester moves HOME)."""
    monkeypatch.setenv("NFPIPE_CACHE_DIR", str(cache_dir()))
    monkeypatch.delenv("CI", raising=False)
    shutil.copy(examples_dir() / "firewall.yaml", pytester.path / "firewall.yaml")
    pytester.makeini(f"[pytest]\nnfpipe_run_prefix = {prefix}\n")
    return pytester


def leftovers(prefix: str) -> list[str]:
    """Namespaces (as ``ip netns list`` lists them) and bpffs entries with *prefix*."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            check=True).stdout.split()
    found = [f"netns {n}" for n in listed if f".{prefix}" in n]
    found += [f"bpffs {e}" for e in os.listdir("/sys/fs/bpf") if prefix in e]
    for root, dirs, files in os.walk("/sys/fs/bpf"):
        found += [f"pin {root}/{n}" for n in dirs + files if prefix in n]
    return found


def test_the_plugin_is_an_entry_point_pytest_loads():
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="pytest11")}
    assert eps.get("nfpipe") == "nfpipe.testing.plugin", \
        f"pytest11 entry points: {eps}: reinstall nfpipe (pip install -e .)"


@pytest.mark.kernel
def test_a_user_test_of_the_firewall_passes_with_real_traffic(user_project, prefix):
    user_project.makepyfile(test_firewall=USER_TESTS)
    result = user_project.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=3)
    assert leftovers(prefix) == []


@pytest.mark.kernel
def test_a_changed_rule_fails_and_teardown_still_cleans_up(user_project, prefix):
    fw = user_project.path / "firewall.yaml"
    text = fw.read_text()
    rule = "- {action: drop, proto: udp, name: no UDP}"
    assert rule in text
    fw.write_text(text.replace(rule, "- {action: drop, proto: udp, dport: 1, name: not 5000}"))
    user_project.makepyfile(test_firewall=USER_TESTS)
    result = user_project.runpytest_subprocess("-p", "no:cacheprovider", "-k", "topology",
                                               timeout=120)
    result.assert_outcomes(failed=1, deselected=2)
    result.stdout.fnmatch_lines(["*DID NOT RAISE*TimeoutError*"])
    assert leftovers(prefix) == []


@pytest.mark.kernel
def test_what_a_test_leaves_on_the_deploy_root_is_a_teardown_error(user_project, prefix):
    """The check after destroy looks at bpffs: a pin the test added under the
    deployment's root is named in a teardown error (and removed here)."""
    user_project.makepyfile(test_litter='''
        from nfpipe.kernel import abi, bpffs, syscall as sc

        def test_litter(nfpipe_topology, nfpipe_deploy):
            topo = nfpipe_topology("two-hosts")
            fw = nfpipe_deploy(topo, "firewall.yaml")
            with sc.map_create(abi.MapType.ARRAY, 4, 4, 1) as fd:
                bpffs.pin(fd, fw.root + "/litter")
    ''')
    result = user_project.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    try:
        result.assert_outcomes(passed=1, errors=1)
        result.stdout.fnmatch_lines(["*LeftBehind*litter (map *"])
    finally:
        for d in os.listdir("/sys/fs/bpf"):
            if prefix in d:
                shutil.rmtree(os.path.join("/sys/fs/bpf", d))
    assert leftovers(prefix) == []


def run_unprivileged(project, *args: str, ci: bool):
    """pytest on the user's tests in a user namespace of its own: not root, no bpf()."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed to run pytest unprivileged")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    return subprocess.run(["unshare", "--user", sys.executable, "-m", "pytest",
                           "-p", "no:cacheprovider", "-rs", *args],
                          cwd=project.path, env=env, capture_output=True, text=True,
                          timeout=120)


def test_off_ci_unprivileged_the_kernel_tests_skip_with_the_reason(user_project):
    user_project.makepyfile(test_gated=GATED_TESTS)
    r = run_unprivileged(user_project, ci=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 passed, 2 skipped" in r.stdout, r.stdout
    assert r.stdout.count("kernel tests need root (CAP_BPF, CAP_NET_ADMIN)") == 1  # -rs: [2]
    assert "SKIPPED [2]" in r.stdout


def test_under_ci_unprivileged_the_kernel_tests_fail(user_project):
    user_project.makepyfile(test_gated=GATED_TESTS)
    r = run_unprivileged(user_project, ci=True)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "1 passed, 2 errors" in r.stdout, r.stdout
    assert r.stdout.count("CI=true forbids skipping kernel tests: kernel tests need root") >= 2

"""The kernel-test gate, for every test directory (tests/, netns/).

Kernel tests (marker ``kernel``) need root and a BPF-capable kernel.  Off CI they
skip with the reason when that is missing; under ``CI=true`` they fail instead,
and any skip at all makes the session fail, so a CI machine that cannot run
them never passes silently.
"""
from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def kernel_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "kernel tests need root (CAP_BPF, CAP_NET_ADMIN)"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "kernel has no BTF (/sys/kernel/btf/vmlinux)"
    return None


def pytest_sessionstart(session):
    """Say which compiler this run builds every program with (CI runs the suites with
    each), also under -q."""
    from nfpipe.toolchain import describe
    info = describe()
    if info["kind"] is None:
        line = f"nfpipe compiler: none ({info['error']})"
    else:
        tested = "tested" if info["tested"] else "NOT a tested compiler"
        line = f"nfpipe compiler: {' '.join(info['argv'])} -- {info['version']} ({tested})"
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)


def pytest_runtest_setup(item):
    if item.get_closest_marker("kernel") is None:
        return
    reason = kernel_unavailable()
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true forbids skipping kernel tests: {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_sessionfinish(session):
    if not IN_CI:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and reporter.stats.get("skipped"):
        reporter.write_line("CI=true: a skipped test is a failure here", red=True)
        session.exitstatus = 1

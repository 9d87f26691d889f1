"""The kernel-test gate, for every test directory (tests/, netns/).

Kernel tests (marker ``kernel``) need root and a BPF-capable kernel.  Off CI they
skip with the reason when that is missing; under ``CI=true`` they fail instead,
and any skip at all makes the session fail, so a CI machine that cannot run
them never passes silently.

The per-test part of the gate is the one users get: nfpipe's pytest plugin
(``nfpipe.testing.plugin``, loaded through its ``pytest11`` entry point) runs it for
every ``kernel`` test and every test using its fixtures.  What stays here is this
repository's own policy: any skip under CI fails the session.
"""
from __future__ import annotations

from nfpipe.testing import plugin as nfpipe_plugin
from nfpipe.testing.plugin import IN_CI


def pytest_configure(config):
    """An install made before the entry point existed does not load the plugin: register
    it here then, under the entry point's name, so the gate runs exactly once."""
    if not config.pluginmanager.has_plugin("nfpipe") and \
            not config.pluginmanager.is_registered(nfpipe_plugin):
        config.pluginmanager.register(nfpipe_plugin, "nfpipe")


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


def pytest_sessionfinish(session):
    if not IN_CI:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and reporter.stats.get("skipped"):
        reporter.write_line("CI=true: a skipped test is a failure here", red=True)
        session.exitstatus = 1

"""Hardware offload on a real offload device: netdevsim, in a 6.12 kernel under qemu.

The VM boots once per session (``offload/vm.py``: the host root shared read-only,
this tree's Python run inside) and runs every check of ``offload/guest.py`` in
one guest process; each test here asserts on one check's record.  Needs qemu and
a prepared cache (``python3 offload/vm.py prepare``: ``.ci/run`` does both).
Without them the tests skip with the reason; under ``CI=true`` they fail.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import guest  # noqa: E402
import vm  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
#: the whole boot + checks; a cached run takes ~10-40 s under TCG
TIMEOUT = float(os.environ.get("NFPIPE_VM_TIMEOUT", "300"))

pytestmark = pytest.mark.vm


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the offload VM shares the host root over 9p: it needs root"
    missing = vm.qemu_missing()
    if missing:
        return missing
    if vm.find_prepared() is None:
        return (f"the offload VM is not prepared in {vm.cache_root()} "
                f"(run: python3 offload/vm.py prepare)")
    return None


@pytest.fixture(scope="session")
def guest_results() -> dict:
    reason = _unavailable()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI=true forbids skipping the offload VM tests: {reason}",
                        pytrace=False)
        pytest.skip(reason)
    prepared = vm.find_prepared()
    assert prepared is not None
    # one compile cache for both sides, at the same path: the host builds what the
    # guest will (fast here, slow under TCG), the guest finds it
    cache = vm.cache_root() / "nfpipe-cache"
    cache.mkdir(parents=True, exist_ok=True)
    before = os.environ.get("NFPIPE_CACHE_DIR")
    os.environ["NFPIPE_CACHE_DIR"] = str(cache)
    try:
        guest.prewarm()
    finally:
        if before is None:
            del os.environ["NFPIPE_CACHE_DIR"]
        else:
            os.environ["NFPIPE_CACHE_DIR"] = before
    job = (f"cd {shlex.quote(str(HERE.parent))}\n"
           f"export NFPIPE_CACHE_DIR={shlex.quote(str(cache))}\n"
           + ("export CI=true\n" if IN_CI else "") +
           f"{shlex.quote(sys.executable)} {shlex.quote(str(HERE / 'guest.py'))} "
           f"{vm.GUEST_RESULTS}/results.json\n")
    res = vm.run(prepared, job, timeout=TIMEOUT, writable=[cache])
    log = f"--- console ---\n{res.console[-6000:]}\n--- guest ---\n{res.job_log[-6000:]}"
    raw = res.files.get("results.json")
    if raw is None:
        pytest.fail(f"the VM wrote no results (rc={res.rc}, {res.seconds:.0f} s"
                    f"{', timed out' if res.timed_out else ''})\n{log}", pytrace=False)
    results = json.loads(raw)
    results["_run"] = {"rc": res.rc, "seconds": res.seconds, "timed_out": res.timed_out,
                       "log": log}
    return results


def test_vm_booted_the_offload_kernel(guest_results):
    run = guest_results["_run"]
    assert not run["timed_out"], run["log"]
    assert run["rc"] == 0, run["log"]
    assert guest_results["_meta"]["uname"].startswith(vm.SERIES), guest_results["_meta"]


@pytest.mark.parametrize("name", list(guest.CHECKS))
def test_guest(guest_results, name):
    rec = guest_results.get(name)
    assert rec is not None, f"check {name} did not run\n{guest_results['_run']['log']}"
    assert rec["ok"], f"{rec.get('error')}\n{rec.get('traceback', '')}"

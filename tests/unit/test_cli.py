"""The command line's shared surface: --version, --json and -v once for every verb,
[NETNS:]IFACE wherever an interface is named, one exit code per kind of failure, and
a start-up that imports only what the verb needs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import nfpipe
from nfpipe.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
FIREWALL = str(ROOT / "examples" / "firewall.yaml")
BAD_ACCESS = str(ROOT / "tests" / "bpf" / "bad_access.c")
kernel = pytest.mark.kernel


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"nfpipe {nfpipe.__version__}"


def test_json_before_or_after_the_verb_is_the_same(capsys):
    assert main(["--json", "validate", FIREWALL]) == 0
    before = json.loads(capsys.readouterr().out)
    assert main(["validate", FIREWALL, "--json"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert before == after and before["valid"] is True
    assert main(["validate", FIREWALL]) == 0
    assert "valid" in capsys.readouterr().out


def test_every_verb_takes_json_and_verbose():
    """Declared once (a parent parser), so no verb can miss them."""
    parser = build_parser()
    verbs = []

    def walk(p, path):
        for action in p._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                for name, sub in action.choices.items():
                    walk(sub, path + [name])
                return
        verbs.append((path, p))
    walk(parser, [])
    assert len(verbs) > 20
    for path, p in verbs:
        opts = {o for a in p._actions for o in a.option_strings}
        assert {"--json", "-v", "--verbose"} <= opts, path


def test_probe_takes_netns_colon_iface(capsys):
    code = main(["probe", "nsA:eth0", "--netns", "nsB", "--no-kernel"])
    assert code == 2
    err = capsys.readouterr().err
    assert "nsA" in err and "nsB" in err and err.startswith("nfpipe: error:")
    assert main(["probe", "--netns", "nsB", "--no-kernel"]) == 2
    assert main(["plan", FIREWALL, "--iface", ":eth0"]) == 2       # no netns before ':'


def test_bad_interface_text_is_a_usage_error(capsys):
    assert main(["deploy", FIREWALL, "--iface", "ns:"]) == 2
    assert "IFACE or NETNS:IFACE" in capsys.readouterr().err


def test_help_does_not_import_the_deploy_stack():
    """`nfpipe --help` and `nfpipe validate` stay light: the CLI imports a verb's module
    only when it runs."""
    code = ("import sys; from nfpipe.cli.main import build_parser; build_parser(); "
            "print(sorted(m for m in sys.modules if m.startswith(('nfpipe.deploy', "
            "'nfpipe.attach', 'scapy', 'pyroute2'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


@kernel
def test_verbose_prints_the_whole_verifier_log(capsys):
    obj = nfpipe.compile(BAD_ACCESS)
    args = ["prog", "run", str(obj), "unchecked", "--packet-hex", "00" * 64]
    assert main(args) == 1
    quiet = capsys.readouterr().err
    assert "bad_access.c:12" in quiet and "verifier log:" not in quiet
    assert main(["-v", *args]) == 1
    loud = capsys.readouterr().err
    assert "verifier log:" in loud and "invalid access to packet" in loud
    assert len(loud.splitlines()) > len(quiet.splitlines())


def test_verbose_shows_the_compiler_command(tmp_path, capsys):
    bad = tmp_path / "bad.c"
    bad.write_text("int broken( {\n")
    assert main(["compile", str(bad)]) == 1
    assert "compiler command:" not in capsys.readouterr().err
    assert main(["compile", str(bad), "-v"]) == 1
    err = capsys.readouterr().err
    assert "compiler command:" in err and str(bad) in err


def test_module_runs_as_nfpipe():
    r = subprocess.run([sys.executable, "-m", "nfpipe.cli.main", "--version"],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ})
    assert r.returncode == 0 and r.stdout.startswith("nfpipe ")


def test_errors_under_json_are_a_json_object_on_stdout(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml"), "--json"]) == 2
    out, err = capsys.readouterr()
    e = json.loads(out)["error"]
    assert e["type"] == "SpecError" and e["exit_code"] == 2
    assert e["file"] == str(tmp_path / "nope.yaml") and "cannot read" in e["message"]
    assert err.startswith("nfpipe: error:")               # the paragraph stays on stderr
    assert main(["status", "--json", "--bogus"]) == 2
    e = json.loads(capsys.readouterr().out)["error"]
    assert e["type"] == "UsageError" and "--bogus" in e["message"]


@pytest.mark.parametrize("args", [
    ["validate", "/nonexistent/p.yaml"],                         # a missing file
    ["compile", "/nonexistent/x.c"],
    ["plan", FIREWALL, "--iface", "nfpipe-no-such-ns:eth0"],    # a missing netns
    ["prog", "run", "/nonexistent.o", "p", "--packet-hex", "00"],
    ["topo", "up", "/nonexistent/t.yaml"],
    ["--no-such-option"],
])
def test_bad_input_is_exit_2_everywhere(args, capsys):
    assert main(args) == 2
    assert capsys.readouterr().err.startswith("nfpipe: error:")


def test_no_arguments_print_the_help(capsys):
    assert main([]) == 2
    assert "usage: nfpipe" in capsys.readouterr().err


def _on_a_pty(code: str) -> bytes:
    """What a Python snippet writes when its stdout and stderr are a terminal."""
    import pty
    import select
    pid, fd = pty.fork()
    if pid == 0:                                           # the child: never returns
        os.environ["TERM"] = "xterm"
        os.execv(sys.executable, [sys.executable, "-c", code])
    out = b""
    while select.select([fd], [], [], 30)[0]:
        try:
            data = os.read(fd, 65536)
        except OSError:                                    # the child closed the pty
            break
        if not data:
            break
        out += data
    os.waitpid(pid, 0)
    return out


PROGRESS = ("import time; from nfpipe.cli import ui\n"
            "with ui.progress('building the thing') as say:\n"
            "    time.sleep({first}); say('loading it'); time.sleep({then})\n"
            "print('done')\n")


def test_progress_shows_on_a_terminal_after_a_second():
    out = _on_a_pty(PROGRESS.format(first=1.6, then=0.6))
    assert b"building the thing" in out and b"loading it" in out and b"done" in out
    quick = _on_a_pty(PROGRESS.format(first=0.1, then=0.1))
    assert b"building" not in quick and b"done" in quick       # under a second: silent


def test_no_progress_off_a_terminal():
    r = subprocess.run([sys.executable, "-c", PROGRESS.format(first=1.5, then=0)],
                       capture_output=True, cwd=ROOT)
    assert r.stdout == b"done\n" and r.stderr == b""

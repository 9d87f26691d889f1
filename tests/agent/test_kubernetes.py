"""deploy/kubernetes/: the DaemonSet, RBAC and ConfigMap that run `nfpipe agent` with the
directory source on every edge node.  Read as Kubernetes would read them, and held
against nfpipe itself: the container's arguments are ones `nfpipe agent` takes, its
paths and ports are the ones it mounts and probes, the ConfigMap's documents are
desired pipelines that validate and target the DaemonSet's nodes, and an agent reading
them laid out as the kubelet lays out a ConfigMap volume (the ..data symlinks) finds
them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from nfpipe.agent import parse_document, parse_labels
from nfpipe.cli.main import build_parser
from nfpipe.deploy.state import LOCK_DIR
from nfpipe.graph import problems_of
from nfpipe.kernel.bpffs import DEFAULT_ROOT
from nfpipe.spec import PipelineSpec

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"


def resources() -> dict[tuple[str, str], dict]:
    out = {}
    for f in sorted(K8S.glob("*.yaml")):
        if f.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(f.read_text()):
            assert {"apiVersion", "kind", "metadata"} <= set(doc), f
            out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


R = resources()
DS = R[("DaemonSet", "nfpipe-agent")]
POD = DS["spec"]["template"]["spec"]
(AGENT,) = POD["containers"]


def agent_args() -> object:
    env = {e["name"]: e for e in AGENT["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    argv = [a.replace("$(NODE_NAME)", "node-1") for a in AGENT["args"]]
    return build_parser().parse_args(["agent", *argv])


def mounts() -> dict[str, tuple[dict, dict]]:
    """mountPath -> (volumeMount, volume)."""
    vols = {v["name"]: v for v in POD["volumes"]}
    return {m["mountPath"]: (m, vols[m["name"]]) for m in AGENT["volumeMounts"]}


def test_kustomize_lists_every_manifest_and_one_namespace_holds_them():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kust["resources"]) == sorted(f.name for f in K8S.glob("*.yaml")
                                               if f.name != "kustomization.yaml")
    ns = R[("Namespace", "nfpipe")]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    for (kind, _name), doc in R.items():
        if kind != "Namespace":
            assert doc["metadata"]["namespace"] == "nfpipe", kind


def test_the_agent_has_an_identity_and_no_permission():
    sa = R[("ServiceAccount", "nfpipe-agent")]
    assert POD["serviceAccountName"] == "nfpipe-agent"
    assert sa["automountServiceAccountToken"] is False
    assert POD["automountServiceAccountToken"] is False
    assert not [k for k, _ in R if k in ("Role", "ClusterRole", "RoleBinding",
                                         "ClusterRoleBinding")]


def test_the_daemonset_runs_what_nfpipe_agent_takes():
    args = agent_args()
    assert args.command == "agent" and args.dir and not args.etcd and args.host == "node-1"
    labels = parse_labels(args.label)
    assert DS["spec"]["selector"]["matchLabels"].items() <= \
        DS["spec"]["template"]["metadata"]["labels"].items()
    assert POD["nodeSelector"] == {"nfpipe.io/role": labels["role"]}
    # the host's interfaces, privileges for bpf() and netlink
    assert POD["hostNetwork"] is True and AGENT["securityContext"]["privileged"] is True
    # what outlives the pod lives on the host: the pins, the state, the deploy locks
    m = mounts()
    bpffs, vol = m[DEFAULT_ROOT]
    assert vol["hostPath"]["path"] == DEFAULT_ROOT and bpffs["mountPropagation"] == \
        "Bidirectional"
    assert args.root.startswith(DEFAULT_ROOT)
    state = [p for p in m if args.state_dir.startswith(p + "/")]
    assert state and "hostPath" in m[state[0]][1]
    lock_home = [p for p in m if LOCK_DIR.startswith(p + "/")]
    assert lock_home and "hostPath" in m[lock_home[0]][1]
    # the documents come from the ConfigMap, mounted where --dir reads
    desired, vol = m[args.dir]
    assert desired.get("readOnly") is True and vol["configMap"]["name"] == "nfpipe-desired"
    # probed where it listens
    host, _, port = args.listen.rpartition(":")
    assert host == "0.0.0.0"                   # the kubelet probes the node's address
    for probe in ("livenessProbe", "readinessProbe"):
        assert AGENT[probe]["httpGet"] == {"path": "/healthz", "port": int(port)}
    assert AGENT["ports"][0]["containerPort"] == int(port)


def test_the_configmap_holds_desired_pipelines_for_the_daemonsets_nodes():
    cm = R[("ConfigMap", "nfpipe-desired")]
    labels = parse_labels(agent_args().label)
    assert cm["data"]
    for key, text in cm["data"].items():
        d = parse_document(text, f"configmap/{key}")
        assert not d.problems, d.problems
        spec = PipelineSpec.from_text(d.pipeline_text(), key)
        assert [str(p) for p in problems_of(spec)] == [], key
        assert [t.ifname for t in d.targets("node-1", labels)] == ["eth0"]
        assert d.targets("node-1", {"role": "core"}) is None


def test_an_agent_reads_the_configmap_as_the_kubelet_mounts_it(tmp_path):
    """A ConfigMap volume: the keys are symlinks into ..data, itself a symlink to a
    timestamped directory.  The agent (a dry run: nothing deployed) finds each
    document through its symlink and would run it on this node's eth0."""
    cm = R[("ConfigMap", "nfpipe-desired")]
    vol = tmp_path / "desired"
    stamp = vol / "..2026_12_03_07_00_00.000000001"
    stamp.mkdir(parents=True)
    for key, text in cm["data"].items():
        (stamp / key).write_text(text)
    os.symlink(stamp.name, vol / "..data")
    for key in cm["data"]:
        os.symlink(f"..data/{key}", vol / key)
    argv = [a.replace("$(NODE_NAME)", "node-1") for a in AGENT["args"]]
    argv[argv.index("--dir") + 1] = str(vol)
    argv[argv.index("--state-dir") + 1] = str(tmp_path / "state")
    argv[argv.index("--listen") + 1] = "off"
    r = subprocess.run([sys.executable, "-m", "nfpipe", "agent", *argv, "--once", "--dry-run",
                        "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert report["host"] == "node-1" and report["problems"] == {}
    names = {yaml.safe_load(t)["name"] for t in cm["data"].values()}
    assert set(report["pipelines"]) == names
    for p in report["pipelines"].values():
        assert p["interfaces"] == ["eth0"] and p["desired_revision"] == 1

"""Deploy: a pipeline built, loaded, checked, attached and pinned so it outlives the CLI;
updated while it runs; inspected, changed live, repaired after a crash, destroyed.

State lives in bpffs under ``/sys/fs/bpf/nfpipe/<pipeline>/`` (``state``): the
manifest (``manifest``: typed records), one pinned link per interface, and every
program and map, pinned under the revision that created it.  One deploy, update
or destroy at a time per pipeline (a lock).

* ``apply``: ``deploy(file)`` — a first deploy (transactional), or an update;
* ``update``: updates (``diff`` decides how) and ``converge``, which rolls an update
  forward, also after a crash;
* ``repair``: ``recover`` (finish or undo what a killed deploy left) and ``destroy``;
* ``inspection``: ``status``, ``stats``, ``prometheus``, ``open_map``, ``node_view``;
* ``configure``: runtime config of one node (``nfpipe rules``, ``nfpipe backends``);
* ``placement``: the attach mode each interface gets, and why.

``NFPIPE_FAULT=<stage>`` (``FAULT_STAGES``, ``UPDATE_FAULT_STAGES``) makes a deploy
kill itself at that stage — how the tests prove the repair.  See docs/deploy.md.
"""
from nfpipe.attach import Target
from nfpipe.deploy.apply import deploy
from nfpipe.deploy.configure import configure, purge_backends, set_filter_rules
from nfpipe.deploy.inspection import (
                                   manifest_of,
                                   node_maps,
                                   node_view,
                                   open_map,
                                   prometheus,
                                   stats,
                                   status,
)
from nfpipe.deploy.manifest import MANIFEST_VERSION, InterfaceRecord, Manifest, NodeRecord
from nfpipe.deploy.repair import destroy, recover
from nfpipe.deploy.state import LOCK_DIR, STATE_ROOT, locked, read_manifest, state_dir
from nfpipe.deploy.steps import FAULT_STAGES, UPDATE_FAULT_STAGES, close_node_maps, occupants
from nfpipe.errors import DeployError

__all__ = ["deploy", "destroy", "recover", "status", "stats", "prometheus", "open_map",
           "node_maps", "node_view", "close_node_maps", "manifest_of", "configure",
           "set_filter_rules", "purge_backends", "read_manifest", "state_dir", "locked",
           "occupants", "Manifest", "NodeRecord", "InterfaceRecord", "MANIFEST_VERSION",
           "Target", "DeployError", "STATE_ROOT", "LOCK_DIR", "FAULT_STAGES",
           "UPDATE_FAULT_STAGES"]

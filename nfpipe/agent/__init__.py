"""The agent: ``nfpipe agent``, one per host, reconciling the pipelines a fleet's desired
state gives the host (etcd, or a directory of documents) with nfpipe's deploy.

* ``desired``: the desired-pipeline document (a pipeline file plus host targeting),
  the ``Source`` interface and the directory source;
* ``etcd``: etcd v3 through its JSON gateway (stdlib only), as a ``Source``;
* ``reconcile``: the reconciler (ownership, adoption, backoff, health);
* ``daemon``: the loop, store outages, the report, metrics, and the HTTP endpoint
  (``/metrics``, ``/healthz``, ``/status``);
* ``fleet``: the fleet's status, rollouts in batches gated on health, rollback.

See docs/agent.md.
"""
from nfpipe.agent.daemon import Agent, Endpoint, parse_listen
from nfpipe.agent.desired import (
           DesiredPipeline,
           DirectorySource,
           Snapshot,
           Source,
           build_snapshot,
           document_text,
           parse_document,
           parse_labels,
)
from nfpipe.agent.etcd import Etcd, EtcdSource
from nfpipe.agent.fleet import Fleet, Gate, RolloutResult, batch_size
from nfpipe.agent.reconcile import Reconciler

__all__ = ["Agent", "DesiredPipeline", "DirectorySource", "Endpoint", "Etcd", "EtcdSource",
           "Fleet", "Gate", "Reconciler", "RolloutResult", "Snapshot", "Source", "batch_size",
           "build_snapshot", "document_text", "parse_document", "parse_labels", "parse_listen"]

"""The inference node: x402-paid per-request inference with a receipt per row, batch jobs
from signed orders run on Dask and settled on chain, health and metrics over HTTP.
``ogkit node serve`` runs it; ``ogkit.client.Node`` talks to it. See ``docs/node.md``."""

from ogkit.node.jobs import JOB_STATES, JobBook, JobRecord, JobRunner
from ogkit.node.paid import INFER_SCHEMA, PaidInference
from ogkit.node.pricing import RegistryPrice, registry_price
from ogkit.node.receipts import PaidCallCheck, verify_paid_call
from ogkit.node.service import NodeService, open_node

__all__ = [
    "INFER_SCHEMA",
    "JOB_STATES",
    "JobBook",
    "JobRecord",
    "JobRunner",
    "NodeService",
    "PaidCallCheck",
    "PaidInference",
    "RegistryPrice",
    "open_node",
    "registry_price",
    "verify_paid_call",
]

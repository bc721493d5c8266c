"""Batch jobs on the node: a requester's signed JobOrder plus a dataset, run, committed and
finalised in the background, their state kept on disk so a restart resumes them.

A job moves ``queued → running → committed → finalized`` (or ``failed``, with the error).
Its id is the order's EIP-712 digest: submitting the same order twice gives the same
job, never a second run. Each state change is written atomically to
``<home>/node/jobs/<job id>.json`` before it is acted on; at start-up queued and running
jobs are queued again (the verified pipeline resumes from its staging folder, and
:func:`ogkit.settle.settle` never commits a batch twice) and committed ones go back to
the finaliser.

The runner runs one job at a time on the node's Dask client (its workers are the
parallelism). The finaliser calls :func:`ogkit.settle.settle` for every committed job
every ``poll`` seconds: it finalises once the challenge window is over and the signed pass
verdicts (store ``verdicts/<batch id>/`` and ``VerdictPublished`` events) reach quorum, or
expires the batch after its grace (the requester is refunded; the job is ``failed``).

The same loop runs a :class:`~ogkit.node.defence.DisputeDefender` over every other batch
the node key committed (paid calls' batches committed with an order, batches settled by
hand with ``ogkit settle``): once a dispute's voting time is over it presents the pass
verdicts holding the quorum, and it finalises those batches after their window.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ogkit.errors import ConfigError, OgkitError, OrderError

if TYPE_CHECKING:
    from ogkit.attest import Attester
    from ogkit.chain.client import ChainClient
    from ogkit.hub import Hub
    from ogkit.keys import Signer
    from ogkit.load import LoadedModel
    from ogkit.store import ContentStore

__all__ = ["JOB_SCHEMA", "JOB_STATES", "JobBook", "JobRecord", "JobRunner", "resolve_dataset"]

log = logging.getLogger(__name__)

JOB_SCHEMA = "ogkit.node.job.v1"
JOB_STATES = ("queued", "running", "committed", "finalized", "failed")
_JOB_ID = re.compile(r"0x[0-9a-f]{64}")
_DATA_SUFFIXES = (".parquet", ".pq", ".csv", ".arrow", ".ipc", ".feather")


@dataclass
class JobRecord:
    job_id: str
    state: str
    order: dict[str, Any]
    dataset: str
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    batch_id: str | None = None
    artifact_id: str | None = None
    artifact_url: str | None = None
    rows: int | None = None
    commit_tx: str | None = None
    finalize_tx: str | None = None
    waiting_for: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"schema": JOB_SCHEMA, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobRecord:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class JobBook:
    """Job records under ``folder``, one JSON file each, written atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _path(self, job_id: str) -> Path:
        if not _JOB_ID.fullmatch(job_id):
            raise ConfigError(f"{job_id!r} is not a job id (0x + 64 lower-case hex digits)")
        return self.folder / f"{job_id}.json"

    def get(self, job_id: str) -> JobRecord | None:
        try:
            path = self._path(job_id)
        except ConfigError:
            return None
        if not path.exists():
            return None
        return JobRecord.from_dict(json.loads(path.read_text()))

    def save(self, record: JobRecord) -> None:
        record.updated = time.time()
        path = self._path(record.job_id)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with self._lock:
            tmp.write_text(json.dumps(record.to_dict(), indent=2, sort_keys=True))
            os.replace(tmp, path)

    def create(self, record: JobRecord) -> tuple[JobRecord, bool]:
        """Save ``record`` unless a job of its id exists; (the job, whether it is new)."""
        with self._lock:
            existing = self.get(record.job_id)
            if existing is not None:
                return existing, False
        self.save(record)
        return record, True

    def all(self) -> list[JobRecord]:
        out = []
        for path in sorted(self.folder.glob("0x*.json")):
            try:
                out.append(JobRecord.from_dict(json.loads(path.read_text())))
            except (ValueError, TypeError, KeyError):
                log.warning("skipping the unreadable job file %s", path)
        return out


def resolve_dataset(ref: Any, store: ContentStore, data_roots: list[Path]) -> Path:
    """The local file a job's dataset reference names: a path relative to the node's store
    (``datasets/mine.parquet``), or an absolute path inside one of ``data_roots``. Anything
    else (``..``, other folders, URLs) is refused: a requester must not make the node read
    its own files."""
    if not isinstance(ref, str) or not ref.strip() or len(ref) > 1024:
        raise ConfigError("'dataset' must be a path (a string of at most 1024 characters)")
    if "\x00" in ref or "://" in ref:
        raise ConfigError(f"dataset {ref[:80]!r}: give a path in the node's store, not a URL")
    path = Path(ref)
    if not path.name.lower().endswith(_DATA_SUFFIXES):
        raise ConfigError(f"dataset {ref[:80]!r} must be a {', '.join(_DATA_SUFFIXES)} file")
    if path.is_absolute():
        real = path.resolve()
        if not any(real.is_relative_to(root.resolve()) for root in data_roots):
            raise ConfigError(
                f"dataset {ref[:80]!r} is outside the node's data folders; put it in the "
                "node's store and give its path there (datasets/NAME.parquet)"
            )
    else:
        if ".." in path.parts:
            raise ConfigError(f"dataset {ref[:80]!r} must not contain '..'")
        root = store.local_path("").resolve()
        real = (root / path).resolve()
        if not real.is_relative_to(root):
            raise ConfigError(f"dataset {ref[:80]!r} leaves the node's store")
    if not real.is_file():
        raise ConfigError(f"dataset {ref[:80]!r} does not exist on the node (looked at {real})")
    return real


class JobRunner:
    """Runs queued jobs one at a time and finalises committed ones (module docstring)."""

    def __init__(
        self,
        *,
        book: JobBook,
        model: LoadedModel,
        hub: Hub,
        store: ContentStore,
        attester: Attester,
        node: Signer,
        chain: ChainClient,
        home: Path,
        dask: Any = None,
        data_roots: list[Path] | None = None,
        poll: float = 2.0,
    ) -> None:
        from ogkit.node.defence import DisputeDefender
        from ogkit.settle import SettlementJournal

        self.book = book
        self.model = model
        self.hub = hub
        self.store = store
        self.attester = attester
        self.node = node
        self.chain = chain
        self.dask = dask
        self.data_roots = list(data_roots or [])
        self.poll = poll
        self.journal = SettlementJournal(chain.chain_id, home)
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stop = threading.Event()
        self._chain_lock = threading.Lock()  # the finaliser and the runner share the node key
        self._threads: list[threading.Thread] = []
        # Every other batch of the node key: paid calls' batches, batches settled by hand.
        self.defender = DisputeDefender(
            chain, node, store, journal=self.journal, lock=self._chain_lock, skip=self._job_batches
        )
        self._defence_said: dict[str, tuple[str, str]] = {}  # batch id -> what was last logged

    def _job_batches(self) -> set[str]:
        """The batches of this node's unfinished jobs: its finaliser's own."""
        open_states = ("queued", "running", "committed")
        return {r.batch_id for r in self.book.all() if r.state in open_states and r.batch_id}

    # -- submitting ---------------------------------------------------------------------------
    def submit(self, doc: Any) -> tuple[JobRecord, bool]:
        """Check a ``POST /v1/jobs`` body and queue its job; (the job, whether it is new).
        Raises OrderError / ConfigError / SignatureError naming what is wrong."""
        from ogkit.order import SignedOrder
        from ogkit.settle import claim_domain

        if not isinstance(doc, dict) or set(doc) - {"order", "dataset"} or "order" not in doc:
            raise ConfigError(
                'the body must be {"order": <the signed order document `ogkit order` writes>, '
                '"dataset": <its path in the node\'s store>}'
            )
        order_doc = doc["order"]
        signed = SignedOrder.from_dict(order_doc)
        requester = signed.verify()
        order = signed.order
        domain = claim_domain(self.chain)
        if order.chain_id != domain.chain_id or (
            order.verifying_contract.lower() != domain.verifying_contract.lower()
        ):
            raise OrderError(
                f"the order is for chain {order.chain_id} contract {order.verifying_contract}, "
                f"this node settles on chain {domain.chain_id} contract "
                f"{domain.verifying_contract}",
                field="verifying_contract",
            )
        if order.model_id.lower() != self.model.model_id.lower():
            raise OrderError(
                f"the order is for model {order.model_id}; this node serves "
                f"{self.model.model_id} ({self.model.manifest.ref})",
                field="model_id",
            )
        if not order.open_to_any_node and order.node.lower() != self.node.address.lower():
            raise OrderError(
                f"the order names node {order.node}, not this node {self.node.address}",
                field="node",
            )
        if order.expired(self.chain.block_timestamp()):
            raise OrderError(
                f"the order's deadline {order.deadline} has passed; sign a new one",
                field="deadline",
            )
        dataset = doc.get("dataset")
        resolve_dataset(dataset, self.store, self.data_roots)
        record = JobRecord(
            job_id=order.digest().lower(),
            state="queued",
            order=signed.to_dict(),
            dataset=str(dataset),
        )
        record, new = self.book.create(record)
        if new:
            log.info("job %s queued for requester %s", record.job_id, requester)
            self._queue.put(record.job_id)
        return record, new

    # -- running ----------------------------------------------------------------------------
    def start(self) -> None:
        for record in self.book.all():
            if record.state in ("queued", "running"):
                self._queue.put(record.job_id)
        for name, target in (
            ("ogkit-node-jobs", self._run_loop),
            ("ogkit-node-final", self._final_loop),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 1.0) -> None:
        """Stop taking work; a job still running is left as it is on disk (it resumes at
        the next start: the pipeline's staging keeps every finished partition)."""
        self._stop.set()
        self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout)

    def _run_loop(self) -> None:
        while not self._stop.is_set():
            job_id = self._queue.get()
            if job_id is None:
                return
            record = self.book.get(job_id)
            if record is None or record.state not in ("queued", "running"):
                continue
            try:
                self._run(record)
            except Exception as exc:  # a job must never take the runner down with it
                if self._stop.is_set():
                    # Stopping (the Dask client closes under the job): the job stays
                    # queued/running on disk and resumes when the node starts again.
                    log.info("job %s interrupted by the node stopping", record.job_id)
                    return
                if not isinstance(exc, OgkitError | ValueError | OSError):
                    log.exception("job %s crashed", record.job_id)
                self._fail(record, exc)

    def _fail(self, record: JobRecord, exc: BaseException) -> None:
        record.state = "failed"
        record.error = f"{type(exc).__name__}: {exc}"
        self.book.save(record)
        log.warning("job %s failed: %s", record.job_id, record.error)

    def _run(self, record: JobRecord) -> None:
        from ogkit.infer import run_verified_inference
        from ogkit.order import SignedOrder
        from ogkit.settle import claim_domain, settle

        signed = SignedOrder.from_dict(record.order)
        order = signed.order
        data = resolve_dataset(record.dataset, self.store, self.data_roots)
        record.state = "running"
        self.book.save(record)
        batch = run_verified_inference(
            self.model,
            data,
            attester=self.attester,
            requester=order.requester,
            dask=self.dask,
            hub=self.hub,
            store=self.store,
            job=order.job,
            domain=claim_domain(self.chain),
            progress=False,
        )
        record.batch_id = batch.batch_id
        record.artifact_id = batch.artifact_id
        record.artifact_url = self.store.url.rstrip("/") + f"/artifacts/{batch.artifact_id}"
        record.rows = batch.row_count
        self.book.save(record)
        with self._chain_lock:
            result = settle(
                batch, self.chain, node=self.node, order=signed, journal=self.journal,
                finalize=False,
            )  # fmt: skip
        record.commit_tx = result.commit_tx
        record.state = "committed"
        self.book.save(record)
        log.info("job %s committed batch %s (%s)", record.job_id, batch.batch_id, result.commit_tx)

    def _final_loop(self) -> None:
        while not self._stop.wait(self.poll):
            for record in self.book.all():
                if record.state != "committed" or self._stop.is_set():
                    continue
                try:
                    self.finalize(record)
                except OgkitError as exc:
                    log.warning("finalising job %s: %s", record.job_id, exc)
                except Exception:
                    log.exception("finalising job %s crashed", record.job_id)
            if self._stop.is_set():
                return
            try:
                self._defend_others()
            except Exception:  # never take the finaliser down with it
                log.exception("dispute defence crashed")

    def _defend_others(self) -> None:
        """One defence pass over the node's batches that are not its jobs'; what it did or
        found is logged when it changes (not every ``poll``)."""
        for action in self.defender.poll():
            said = (action.action, action.detail)
            if self._defence_said.get(action.batch_id) == said:
                continue
            self._defence_said[action.batch_id] = said
            warn = action.action in ("error", "no-verdicts", "below-quorum")
            level = logging.WARNING if warn else logging.INFO
            log.log(level, "batch %s %s: %s", action.batch_id, action.action, action.detail)

    def finalize(self, record: JobRecord) -> JobRecord:
        """One finaliser step for a committed job."""
        from ogkit.batch import load_batch
        from ogkit.settle import settle

        batch = load_batch(record.artifact_id, self.store)
        with self._chain_lock:
            result = settle(batch, self.chain, node=self.node, journal=self.journal)
        if result.status == "finalized":
            record.state = "finalized"
            record.finalize_tx = result.finalize_tx
            record.waiting_for = None
            self.book.save(record)
            log.info("job %s finalised (%s)", record.job_id, result.finalize_tx)
        elif result.status in ("refunded", "slashed"):
            record.state = "failed"
            record.error = f"the batch was {result.status} on chain"
            self.book.save(record)
        else:
            waiting = result.waiting_for
            if result.status == "disputed":
                waiting = self.defend(batch) or waiting
            if waiting != record.waiting_for:
                record.waiting_for = waiting
                self.book.save(record)
        return record

    def defend(self, batch: Any) -> str | None:
        """A dispute open on one of this node's batches: once its voting time is over and
        pass verdicts holding the quorum exist (on chain or in the store), present them
        (``resolveChallenge``): the dispute is rejected and the batch goes on. Without
        them nobody can reject it, and after a second window it is voided and the batch
        refunded (docs/contracts.md). What the node is waiting for or did, or None
        (:func:`ogkit.node.defence.defend_dispute`)."""
        from ogkit.chain.records import onchain_batch
        from ogkit.node.defence import defend_dispute

        found = onchain_batch(self.chain, batch.batch_id)
        if found is None:
            return None
        action = defend_dispute(
            self.chain, found, node=self.node, store=self.store, lock=self._chain_lock
        )
        return action.detail if action is not None else None

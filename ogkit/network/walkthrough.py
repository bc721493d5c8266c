"""One batch job through the whole network, watched from outside, for notebooks and demos.

:func:`run_network_job` starts the network (``network_up``), writes a dataset into the
node's store, has the requester sign a job order, submits it over HTTP with
:class:`ogkit.client.Node`, and records what it sees until the batch is final: the job's
states as the node reports them, each verifier daemon's verdict as it appears on chain,
and (on a dev chain) the clock moved past the challenge window so the node can finalise.
The network is stopped at the end unless ``keep_running``, whatever happened.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from ogkit.errors import OgkitError

if TYPE_CHECKING:
    import altair as alt

__all__ = ["NetworkRun", "run_network_job", "timeline_chart"]

log = logging.getLogger(__name__)

_TIMELINE = {"seconds": pl.Float64, "actor": pl.Utf8, "event": pl.Utf8}


@dataclass
class NetworkRun:
    """What a run saw: the network (``network.json``), the job's final record, a timeline
    (seconds since ``network up`` began, who, what), the verdicts on chain and the
    daemons' status at the end."""

    network: dict[str, Any]
    job: dict[str, Any]
    timeline: pl.DataFrame
    verdicts: pl.DataFrame
    daemons: pl.DataFrame
    stopped: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "state": self.job.get("state"),
            "batch_id": self.job.get("batch_id"),
            "rows": self.job.get("rows"),
            "verdicts": self.verdicts.height,
            "verdicts_passed": int(self.verdicts["passed"].sum()) if self.verdicts.height else 0,
            "seconds": float(self.timeline["seconds"].max() or 0.0),
        }


def run_network_job(
    home: Path,
    *,
    rows: int = 400,
    seed: int = 0,
    devnet_port: int | None = None,
    timeout: float = 240.0,
    keep_running: bool = False,
    plan: Any = None,
) -> NetworkRun:
    """Start the network of ``home``, run one job of ``rows`` sample rows through it over
    HTTP and watch it until finalised (at most ``timeout`` seconds); see the module."""
    from ogkit.chain.devnet import Devnet
    from ogkit.client import Node
    from ogkit.dataset import commit_dataset
    from ogkit.hub import Hub
    from ogkit.keys import KeyStore
    from ogkit.load import load_model
    from ogkit.network.supervisor import NetworkPlan, network_down, network_status, network_up
    from ogkit.order import new_order
    from ogkit.samples import make_tabular

    plan = plan or NetworkPlan(poll=0.5)
    home = Path(home)
    events: list[dict[str, Any]] = []
    started = time.monotonic()

    def note(actor: str, event: str) -> None:
        events.append({"seconds": round(time.monotonic() - started, 2), "actor": actor,
                       "event": event})  # fmt: skip
        log.info("%6.1f s  %-12s %s", events[-1]["seconds"], actor, event)

    stopped: list[str] = []
    try:
        network = network_up(home, plan, devnet_port=devnet_port)
        note("network", "up: devnet, facilitator, node, " + ", ".join(plan.verifier_keys()))
        devnet = Devnet(home, port=devnet_port)
        chain = devnet.client()
        hub = Hub(home=home)
        requester = KeyStore(home).load(plan.requester_key)
        manifest = hub.manifest(plan.model)
        relpath = f"datasets/network-{seed}-{rows}.parquet"
        data = hub.store.local_path(relpath)
        data.parent.mkdir(parents=True, exist_ok=True)
        make_tabular(rows, seed=seed).write_parquet(data)
        order = new_order(
            requester=requester.address,
            model_id=manifest.model_id,
            model_owner=manifest.owner,
            commitment=commit_dataset(data, load_model(plan.model, hub=hub)),
            job=f"network-{int(time.time())}",
            node=network["keys"][plan.node_key],
            max_price_per_row=manifest.price_per_inference,
            chain_id=chain.chain_id,
            verifying_contract=chain.contract("InferenceSettlement").address,
            now=chain.block_timestamp(),
        ).sign(requester)
        verifiers = {network["keys"][v]: v for v in plan.verifier_keys()}
        with Node(network["node"], timeout=30) as node:
            job = node.submit_job(order, relpath)
            note("requester", f"submitted job {job['job_id'][:10]}… over HTTP")
            state, seen, moved = None, set(), False
            deadline = time.monotonic() + timeout
            while True:
                record = node.job(job["job_id"])
                if record["state"] != state:
                    state = record["state"]
                    note("node", state)
                if state == "failed":
                    raise OgkitError(f"the node failed the job: {record.get('error')}")
                if state == "finalized":
                    break
                if record.get("batch_id"):
                    for v in _verdicts(chain, record["batch_id"]):
                        if v["verifier"] not in seen:
                            seen.add(v["verifier"])
                            word = "pass" if v["passed"] else "FAIL"
                            note(verifiers.get(v["verifier"], v["verifier"]), f"verdict {word}")
                    if seen >= set(verifiers) and not moved and chain.kind != "rpc":
                        chain.increase_time(int(chain.deployment.params.challenge_window) + 1)
                        note("devnet", "clock moved past the challenge window")
                        moved = True
                if time.monotonic() > deadline:
                    raise OgkitError(
                        f"job {job['job_id']} is still {state} after {timeout:g} s; see the "
                        f"logs under {home / 'network' / 'logs'}"
                    )
                time.sleep(0.25)
        verdicts = pl.DataFrame(
            [{**v, "name": verifiers.get(v["verifier"], "")}
             for v in _verdicts(chain, record["batch_id"])],
            schema={"verifier": pl.Utf8, "passed": pl.Boolean, "block": pl.Int64,
                    "name": pl.Utf8},
        )  # fmt: skip
        status = network_status(home, devnet_port=devnet_port)
        daemons = pl.DataFrame(
            [{k: d.get(k) for k in ("address", "next_block", "batches_verified",
                                    "batches_failed", "votes", "last_error")}
             for d in status["daemons"]],
            schema={"address": pl.Utf8, "next_block": pl.Int64, "batches_verified": pl.Int64,
                    "batches_failed": pl.Int64, "votes": pl.Int64, "last_error": pl.Utf8},
        )  # fmt: skip
    finally:
        if not keep_running:
            stopped = network_down(home, devnet_port=devnet_port)
    return NetworkRun(
        network, record, pl.DataFrame(events, schema=_TIMELINE), verdicts, daemons, stopped
    )


def _verdicts(chain: Any, batch_id: str) -> list[dict[str, Any]]:
    return [
        {
            "verifier": e["args"]["verifier"],
            "passed": bool(e["args"]["pass"]),
            "block": int(e["blockNumber"]),
        }
        for e in chain.events(
            "InferenceSettlement",
            "VerdictPublished",
            argument_filters={"batchId": bytes.fromhex(batch_id.removeprefix("0x"))},
        )
    ]


def timeline_chart(
    timeline: pl.DataFrame, *, title: str = "One job through the network"
) -> alt.Chart:
    """Who did what when: one row per actor, a point per event."""
    import altair as alt

    # Events of one actor less than a second apart share one label ("queued → running").
    merged: list[dict[str, Any]] = []
    for row in timeline.iter_rows(named=True):
        last = merged[-1] if merged else None
        if last and last["actor"] == row["actor"] and row["seconds"] - last["seconds"] < 1.0:
            last["event"] += f" → {row['event']}"
        else:
            merged.append(dict(row))
    data = pl.DataFrame(merged, schema=_TIMELINE).to_pandas()
    base = alt.Chart(data).encode(
        x=alt.X("seconds:Q", title="seconds since `network up` began"),
        y=alt.Y("actor:N", title=None, sort=None),
    )
    points = base.mark_circle(size=120).encode(
        color=alt.Color("actor:N", legend=None), tooltip=["seconds", "actor", "event"]
    )
    labels = base.mark_text(align="left", dx=8, dy=-8, fontSize=10).encode(text="event:N")
    return (points + labels).properties(title=title, width=560, height=220)

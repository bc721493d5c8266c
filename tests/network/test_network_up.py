"""``ogkit network up`` → ``status`` → a batch job over HTTP (``ogkit.client.Node``) that is
committed, verified by the three verifier daemons and finalised by the node → ``network
down`` leaves no process behind. All of it as real processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ogkit.chain.devnet import Devnet
from ogkit.client import Node
from ogkit.dataset import commit_dataset
from ogkit.hub import Hub
from ogkit.keys import KeyStore
from ogkit.load import load_model
from ogkit.order import new_order
from ogkit.samples import make_tabular

from .conftest import REPO, free_port, wait_for

pytestmark = pytest.mark.anvil


def ogkit(env: dict[str, str], *args: str, timeout: float = 240) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "ogkit.cli", *args, "--json"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # A zombie leader (already dead, not yet reaped by init) does not count.
    try:
        state = Path(f"/proc/{pgid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        state = "gone"
    members = [
        p
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and _pgid_of(p) == pgid and _state(p) != "Z"
    ]
    return state not in ("Z", "gone") or bool(members)


def _pgid_of(p: Path) -> int | None:
    try:
        return int(p.joinpath("stat").read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, ValueError, IndexError):
        return None


def _state(p: Path) -> str:
    try:
        return p.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


@pytest.fixture
def network_home(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OGKIT_")}
    env.update(OGKIT_HOME=str(home), OGKIT_DEVNET_PORT=str(free_port()), PYTHONUNBUFFERED="1")
    yield home, env
    # Whatever happened: stop everything `up` started, then make sure of it.
    subprocess.run([sys.executable, "-m", "ogkit.cli", "network", "down"], env=env, cwd=REPO,
                   capture_output=True, timeout=120)  # fmt: skip
    for pid_file in (home / "network" / "pids").glob("*.json"):
        with contextlib.suppress(OSError, ValueError, ProcessLookupError):
            os.killpg(int(json.loads(pid_file.read_text())["pid"]), signal.SIGKILL)
    Devnet(home, port=int(env["OGKIT_DEVNET_PORT"])).down()


def test_network_up_job_over_http_verified_finalised_then_down(network_home):
    home, env = network_home
    up = ogkit(env, "network", "up", "--poll", "0.5")
    names = sorted(p["name"] for p in up["processes"])
    assert names == ["facilitator", "node", "verifier-1", "verifier-2", "verifier-3"]
    assert up["node"].startswith("http://127.0.0.1:") and up["facilitator"]
    pgids = [p["pid"] for p in up["processes"]]

    status = ogkit(env, "network", "status")
    assert status["devnet"]["running"]
    assert all(p["running"] for p in status["processes"]), status["processes"]
    node_status = next(p for p in status["processes"] if p["name"] == "node")
    assert isinstance(node_status["detail"]["health"], dict)

    # The requester (funded and allowed by `network up`) orders a job from the node.
    hub = Hub(home=home)
    keys = KeyStore(home)
    requester = keys.load("requester")
    chain = Devnet(home, port=int(env["OGKIT_DEVNET_PORT"])).client()
    data = home / "store" / "datasets" / "network.parquet"
    data.parent.mkdir(parents=True, exist_ok=True)
    make_tabular(400, seed=21).write_parquet(data)
    manifest = hub.manifest("tab@1.0.0")
    order = new_order(
        requester=requester.address,
        model_id=manifest.model_id,
        model_owner=manifest.owner,
        commitment=commit_dataset(data, load_model("tab@1.0.0", hub=hub)),
        job="network-up",
        node=up["keys"]["node"],
        max_price_per_row=manifest.price_per_inference,
        chain_id=chain.chain_id,
        verifying_contract=chain.contract("InferenceSettlement").address,
        now=chain.block_timestamp(),
    ).sign(requester)
    with Node(up["node"], timeout=30) as node:
        job = node.submit_job(order, "datasets/network.parquet")
        committed = node.wait_job(job["job_id"], until="committed", timeout=180, poll=0.5)
        batch_id = committed["batch_id"]

        verifiers = {up["keys"][f"verifier-{i}"] for i in (1, 2, 3)}

        def published() -> dict[str, bool]:
            events = chain.events(
                "InferenceSettlement",
                "VerdictPublished",
                argument_filters={"batchId": bytes.fromhex(batch_id[2:])},
            )
            got = {e["args"]["verifier"]: bool(e["args"]["pass"]) for e in events}
            return got if set(got) == verifiers else {}

        assert all(wait_for("the three daemons' verdicts", published, timeout=120).values())
        chain.increase_time(chain.deployment.params.challenge_window + 1)
        final = node.wait_job(job["job_id"], until="finalized", timeout=120, poll=0.5)
        assert final["finalize_tx"].startswith("0x")

    status = ogkit(env, "network", "status")
    daemons = {d["address"]: d for d in status["daemons"] if d["role"] == "verifier"}
    assert set(daemons) == verifiers
    assert all(d["running"] and d["batches_verified"] >= 1 for d in daemons.values()), daemons

    down = ogkit(env, "network", "down")
    assert set(down["stopped"]) == {*names, "devnet"}
    assert not any(group_alive(pgid) for pgid in pgids)
    assert not Devnet(home, port=int(env["OGKIT_DEVNET_PORT"])).status().running
    assert ogkit(env, "network", "status")["processes"] == []

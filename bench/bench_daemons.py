"""The verifier daemon's cost over doing its work by hand, measured in the same run.

Starts its own anvil devnet (a temporary home, a free port; stopped at the end), commits
``--batches`` batches of ``--rows`` sample tabular rows through signed orders (after one
more that warms both sides up: model sessions, the worker process; not timed), then:

- **baseline**: verifier-1 does by hand what ``ogkit verify --attest --publish`` does, batch
  after batch in this process: ``verify_batch`` with the daemon's own policy (the chain's
  allowlist, the commitment, its key-derived sample), then ``attest_batch(publish=True)``;
- **daemon**: verifier-2's :class:`~ogkit.network.verifier.VerifierDaemon` handles the same
  commits from its cursor (log reads, the record check, the on-chain check for its own
  verdict, the worker process, publishing, the state file after every item).

Prints seconds per batch for both and daemon / baseline; with ``--isolate`` off the
daemon verifies in its own process (no worker), which isolates the worker's cost.

    .venv/bin/python bench/bench_daemons.py [--batches 4] [--rows 2000] [--sample-rate 0.05]
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import time
from pathlib import Path

OPG = 10**18


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--sample-rate", type=float, default=0.05)
    parser.add_argument("--no-isolate", action="store_true", help="daemon verifies in-process")
    args = parser.parse_args()

    from ogkit.attest import make_attester
    from ogkit.chain.devnet import Devnet
    from ogkit.chain.records import onchain_batch
    from ogkit.dataset import DatasetCommitment, commit_dataset
    from ogkit.hub import Hub
    from ogkit.infer import run_verified_inference
    from ogkit.keys import KeyStore
    from ogkit.load import load_model
    from ogkit.network.daemon import WatchConfig, rpc_connector, sample_secret
    from ogkit.network.verifier import VerifierConfig, VerifierDaemon, verify_task
    from ogkit.order import new_order
    from ogkit.samples import make_tabular, sample_model_path
    from ogkit.settle import attest_batch, claim_domain, prepare_dev_settlement, settle
    from ogkit.store import ContentStore
    from ogkit.verify import verify_batch

    with tempfile.TemporaryDirectory(prefix="ogkit-bench-daemons-") as tmp:
        home = Path(tmp) / "home"
        devnet = Devnet(home, port=_free_port())
        devnet.up()
        try:
            keys = KeyStore(home)
            names = ("owner", "enclave", "requester", "node", "verifier-1", "verifier-2",
                     "verifier-3")  # fmt: skip
            s = {n: keys.ensure_dev_key(n) for n in names}
            devnet.fund_dev_accounts([x.address for x in s.values()], eth=10**19, opg=10**6 * OPG)
            hub = Hub(home=home)
            hub.publish(sample_model_path("tabular"), name="tab", version="1.0.0", price=1000,
                        signer=s["owner"])  # fmt: skip
            manifest = hub.manifest("tab")
            model = load_model("tab", hub=hub)
            chain = devnet.client()
            prepare_dev_settlement(
                chain, deployer=devnet.deployer(), manifest=manifest,
                runtime_id=model.runtime_id, owner=s["owner"], node=s["node"],
                attester=s["enclave"], requester=s["requester"],
                verifiers=[s[f"verifier-{i}"] for i in (1, 2, 3)],
            )  # fmt: skip
            settlement = chain.contract("InferenceSettlement")

            def commit(i: int):
                data = make_tabular(args.rows, seed=100 + i)
                commitment = commit_dataset(data, model)
                order = new_order(
                    requester=s["requester"].address, model_id=manifest.model_id,
                    model_owner=manifest.owner, commitment=commitment, job=f"bench-{i}",
                    node=s["node"].address, max_price_per_row=manifest.price_per_inference,
                    chain_id=chain.chain_id, verifying_contract=settlement.address,
                    now=chain.block_timestamp(),
                ).sign(s["requester"])  # fmt: skip
                batch = run_verified_inference(
                    model, data, attester=make_attester("software", signer=s["enclave"]),
                    requester=s["requester"].address, hub=hub, commitment=commitment,
                    domain=claim_domain(chain), job=f"bench-{i}", progress=False,
                )  # fmt: skip
                settle(batch, chain, node=s["node"], order=order, finalize=False)
                return batch

            config = VerifierConfig(sample_rate=args.sample_rate)
            secret = sample_secret(s["verifier-1"], chain.chain_id, settlement.address,
                                   "verifier sample")  # fmt: skip

            def by_hand(batch) -> None:
                found = onchain_batch(chain, batch.batch_id)
                policy, task = verify_task(chain, batch, found, secret, config, hub)
                verdict = verify_batch(
                    batch, policy, hub=hub,
                    commitment=DatasetCommitment(task.dataset_id, task.row_count),
                    requester=task.requester, model=task.model, progress=False,
                )  # fmt: skip
                attest_batch(chain, batch, passed=verdict.passed, verifier=s["verifier-1"],
                             publish=True)  # fmt: skip

            daemon = VerifierDaemon(
                rpc_connector(devnet.url, home), s["verifier-2"], home,
                ContentStore(home / "store"),
                config=VerifierConfig(sample_rate=args.sample_rate, isolate=not args.no_isolate),
                watch=WatchConfig(poll=0.05, from_block=chain.block_number() + 1), hub=hub,
            )  # fmt: skip

            def daemon_until(batches) -> None:
                while not all(b.batch_id in daemon.state.done for b in batches):
                    daemon.poll_once()

            # A first batch warms both (model sessions, the worker): not timed.
            warm = commit(0)
            by_hand(warm)
            daemon.ensure_connected()
            daemon_until([warm])
            batches = [commit(i) for i in range(1, args.batches + 1)]

            started = time.perf_counter()
            for batch in batches:
                by_hand(batch)
            baseline = (time.perf_counter() - started) / len(batches)
            started = time.perf_counter()
            daemon_until(batches)
            per_batch = (time.perf_counter() - started) / len(batches)
            daemon.close()
        finally:
            devnet.down()
    mode = "in-process" if args.no_isolate else "worker process"
    print(f"{args.batches} batches x {args.rows:,} rows, sample rate {args.sample_rate:g}")
    print(f"  by hand (verify + attest --publish): {baseline:7.3f} s/batch")
    print(f"  verifier daemon ({mode}):      {per_batch:7.3f} s/batch")
    print(f"  daemon / by hand:                    {per_batch / baseline:7.2f}")


if __name__ == "__main__":
    main()

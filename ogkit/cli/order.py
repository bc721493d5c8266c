"""``ogkit order new | sign | show``: the requester's signed job order (EIP-712), the only
way the settlement contract accepts a batch."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from ogkit.cli.common import add_command, chain_option, opg_text, parse_amount, print_json
from ogkit.errors import ConfigError, OrderError, SignatureError
from ogkit.settings import Settings

__all__ = ["register"]

_DURATION = re.compile(r"(\d+)([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Seconds: ``3600``, ``90m``, ``12h``, ``2d``."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or int(match[1]) == 0:
        raise ConfigError(
            f"--deadline {text!r}: give a positive time from now in seconds (3600) or with "
            "a unit (90m, 12h, 2d)"
        )
    return int(match[1]) * _UNIT_SECONDS[match[2]]


def _address(text: str, keys: Any) -> str:
    """An address as given, or the address of the local key of that name."""
    return text if text.startswith("0x") else keys.load(text).address


def _domain(args: argparse.Namespace, settings: Settings) -> tuple[int, str, int | None]:
    """The claim domain: ``--chain-id`` with ``--contract`` (offline), else the chain's
    settlement contract (``--chain``, default ``$OGKIT_CHAIN``); and the chain's clock when
    there is a chain (deadlines are checked against it, and a devnet's clock moves with
    ``ogkit chain advance``)."""
    if args.chain_id is not None or args.contract is not None:
        if args.chain is not None:
            raise ConfigError("give --chain, or --chain-id with --contract, not both")
        if args.chain_id is None or args.contract is None:
            raise ConfigError(
                "an offline domain needs both --chain-id N and --contract ADDRESS (the "
                "InferenceSettlement address); or name a chain with --chain"
            )
        return args.chain_id, args.contract, None
    from ogkit.chain.connection import connect_from_settings
    from ogkit.settle import claim_domain

    chain = connect_from_settings(settings, args.chain)
    domain = claim_domain(chain)
    return domain.chain_id, domain.verifying_contract, chain.block_timestamp()


def _model(args: argparse.Namespace, settings: Settings) -> tuple[str, Any]:
    """The model id and, when the hub has it, its manifest (for the owner and price)."""
    from ogkit.attest import is_hex32
    from ogkit.errors import ModelNotFoundError
    from ogkit.hub import Hub

    if is_hex32(args.model) and args.owner is not None and args.max_price is not None:
        return args.model.lower(), None  # everything given: no hub needed
    hub = Hub(settings.store, home=settings.home)
    if is_hex32(args.model):
        try:
            manifest = hub.manifest(args.model)
        except ModelNotFoundError:
            raise ConfigError(
                f"model {args.model} is not in this hub: give its owner and price with "
                "--owner ADDRESS --max-price AMOUNT"
            ) from None
        return manifest.model_id, manifest
    manifest = hub.manifest(args.model)
    return manifest.model_id, manifest


def _summary(order: Any, signed: Any, path: Path | None) -> dict[str, Any]:
    """What ``show`` reports (and ``new``/``sign`` in ``--json``): the fields, the digest,
    and whether the requester's signature checks out."""
    signer = problem = None
    valid = None
    if signed is not None:
        try:
            signer = signed.recover_signer()
            signed.verify()
            valid = True
        except SignatureError as exc:
            valid, problem = False, str(exc)
    return {
        "schema": "ogkit.order.show.v1",
        "path": str(path) if path is not None else None,
        "order": order.to_dict(),
        "digest": order.digest(),
        "domain": order.domain.to_dict(),
        "signature": signed.signature if signed is not None else None,
        "signed": signed is not None,
        "signer": signer,
        "signature_valid": valid,
        "problem": problem,
        "any_node": order.open_to_any_node,
        "expired": order.expired(),
    }


def _print_summary(doc: dict[str, Any]) -> None:
    import datetime as dt

    o = doc["order"]
    deadline = dt.datetime.fromtimestamp(o["deadline"], dt.UTC).isoformat(timespec="seconds")
    print(f"order {doc['digest']}" + (f" ({doc['path']})" if doc["path"] else ""))
    rows = [
        ("requester", o["requester"]),
        ("model", f"{o['model_id']} (owner {o['model_owner']})"),
        ("dataset", f"{o['dataset_id']} (up to {o['max_rows']:,} rows)"),
        ("job", f"{o['job']!r} ({o['job_hash']})"),
        ("price cap", f"{opg_text(int(o['max_price_per_row']))} per row"),
        ("node", o["node"] + ("  (ANY staked node may commit it)" if doc["any_node"] else "")),
        ("deadline", f"{deadline}" + ("  (EXPIRED)" if doc["expired"] else "")),
        ("nonce", o["nonce"]),
        ("domain", f"chain {o['chain_id']}, settlement contract {o['verifying_contract']}"),
    ]
    for name, value in rows:
        print(f"  {name:10} {value}")
    if not doc["signed"]:
        where = doc["path"] or "ORDER.json"
        print(f"  signature  none: sign it with `ogkit order sign {where} --key REQUESTER`")
    elif doc["signature_valid"]:
        print(f"  signature  valid, by the requester {doc['signer']}")
    else:
        print(f"  signature  INVALID: {doc['problem']}")


def _new(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.dataset import DatasetCommitment
    from ogkit.keys import KeyStore
    from ogkit.order import save_order

    out = Path(args.out)
    if out.exists() and not args.force:
        raise ConfigError(f"{out} exists: pick another --out, or pass --force to replace it")
    keys = KeyStore(settings.home)
    if args.requester is not None and not args.unsigned:
        raise ConfigError(
            "--requester names the requester of an --unsigned order; a signed order's "
            "requester is its --key"
        )
    signer = None
    if args.requester is not None:
        requester = _address(args.requester, keys)
    else:
        signer = keys.load(args.key)
        requester = signer.address
    model_id, manifest = _model(args, settings)
    owner = _address(args.owner, keys) if args.owner else manifest.owner
    if manifest is not None and owner.lower() != manifest.owner.lower():
        raise ConfigError(
            f"--owner {owner} is not the owner of {manifest.ref} in the hub ({manifest.owner})"
        )
    if args.max_price is not None:
        price = parse_amount(args.max_price)
        if price < 0:
            raise ConfigError(f"--max-price must be >= 0, got {args.max_price!r}")
    else:
        price = manifest.price_per_inference
    if manifest is not None and price < manifest.price_per_inference:
        print(
            f"warning: --max-price {opg_text(price)} is below {manifest.ref}'s price of "
            f"{opg_text(manifest.price_per_inference)} per row: no node can settle this order",
            file=sys.stderr,
        )
    node = _address(args.node, keys)
    chain_id, contract, now = _domain(args, settings)
    from ogkit.order import new_order

    order = new_order(
        requester=requester,
        model_id=model_id,
        model_owner=owner,
        commitment=DatasetCommitment.parse(args.commitment),
        job=args.job,
        node=node,
        max_price_per_row=price,
        chain_id=chain_id,
        verifying_contract=contract,
        ttl=parse_duration(args.deadline),
        nonce=args.nonce,
        max_rows=args.max_rows,
        now=now,
    )
    signed = None if args.unsigned else order.sign(signer)
    save_order(signed or order, out)
    doc = {**_summary(order, signed, out), "schema": "ogkit.order.written.v1"}
    if args.json:
        print_json(doc)
    else:
        _print_summary(doc)
        print(f"wrote {'unsigned ' if signed is None else ''}order to {out}")
    return 0


def _sign(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.keys import KeyStore
    from ogkit.order import SignedOrder, load_order, save_order

    loaded = load_order(args.order)
    order = loaded.order if isinstance(loaded, SignedOrder) else loaded
    keys = KeyStore(settings.home)
    signer = keys.load(args.key)
    if signer.address.lower() != order.requester.lower():
        names = [k.name for k in keys.list() if k.address.lower() == order.requester.lower()]
        fix = f"--key {names[0]}" if names else "--key <the requester's key>"
        raise OrderError(
            f"key {args.key!r} is {signer.address}, not the order's requester "
            f"{order.requester}: only the requester signs its order "
            f"(`ogkit order sign {args.order} {fix}`)",
            field="requester",
        )
    signed = order.sign(signer)
    out = Path(args.out) if args.out else Path(args.order)
    save_order(signed, out)
    doc = {**_summary(order, signed, out), "schema": "ogkit.order.written.v1"}
    if args.json:
        print_json(doc)
    else:
        _print_summary(doc)
        print(f"wrote signed order to {out}")
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.order import SignedOrder, load_order

    loaded = load_order(args.order)
    if isinstance(loaded, SignedOrder):
        doc = _summary(loaded.order, loaded, Path(args.order))
    else:
        doc = _summary(loaded, None, Path(args.order))
    if args.json:
        print_json(doc)
    else:
        _print_summary(doc)
    return 1 if doc["signature_valid"] is False else 0


def register(groups) -> None:
    order = groups.add_parser(
        "order", help="requester-signed job orders: what a node may run and settle"
    )
    sub = order.add_subparsers(dest="command", required=True)
    p = add_command(
        sub,
        "new",
        _new,
        "build a job order and sign it with the requester's key (writes ORDER.json)",
    )
    p.add_argument("--model", required=True, help="model id (0x…) or name@version in the hub")
    p.add_argument(
        "--owner", help="the model owner's address or key name (default: the hub's manifest)"
    )
    p.add_argument(
        "--commitment",
        required=True,
        metavar="ROOT:ROWS",
        help="the dataset commitment, INPUT_ROOT:ROWS (from `ogkit commit`)",
    )
    p.add_argument(
        "--job", default="default", help="job name, as `ogkit infer --job` (default: default)"
    )
    p.add_argument(
        "--node",
        required=True,
        help="the one inference node (address or key name) that may commit the order; the "
        "zero address lets any staked node take it",
    )
    p.add_argument(
        "--max-price",
        help="the most paid per row, base units or 0.01opg (default: the hub's price)",
    )
    p.add_argument(
        "--max-rows", type=int, help="rows billed at most (default: the commitment's rows)"
    )
    p.add_argument(
        "--deadline",
        default="1d",
        metavar="TIME_FROM_NOW",
        help="how long the order can be committed: seconds, or 90m, 12h, 2d (default: 1d)",
    )
    p.add_argument("--nonce", type=int, help="uint256 nonce (default: random 128-bit)")
    p.add_argument("--key", default="requester", help="the requester's key (default: requester)")
    p.add_argument(
        "--requester", help="with --unsigned: the requester's address or key name, not --key"
    )
    p.add_argument("--unsigned", action="store_true", help="write the order without signing it")
    p.add_argument("-o", "--out", default="order.json", help="where to write (default: order.json)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    _domain_options(p)

    p = add_command(sub, "sign", _sign, "sign an unsigned order with the requester's key")
    p.add_argument("order", help="the order file")
    p.add_argument("--key", default="requester", help="the requester's key (default: requester)")
    p.add_argument("-o", "--out", help="where to write (default: in place)")

    p = add_command(sub, "show", _show, "an order's fields, digest and signature check")
    p.add_argument("order", help="the order file")


def _domain_options(p: argparse.ArgumentParser) -> None:
    chain_option(p)
    p.add_argument(
        "--chain-id", type=int, help="offline: the chain id of the domain (with --contract)"
    )
    p.add_argument("--contract", help="offline: the InferenceSettlement address (with --chain-id)")

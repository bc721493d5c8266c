"""``ogkit hub …``: publish, register, list, search, show, pull, verify, deprecate, reindex."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ogkit.cli.common import (
    add_command,
    chain_option,
    opg_text,
    parse_amount,
    parse_input_map,
    print_json,
)
from ogkit.settings import Settings

__all__ = ["register"]


def _hub(settings: Settings):
    from ogkit.hub import Hub

    return Hub(settings.store, home=settings.home)


def _signer(args: argparse.Namespace, settings: Settings):
    from ogkit.keys import KeyStore

    return KeyStore(settings.home).load(args.key)


def _entry_line(entry) -> str:
    m = entry.manifest
    flag = "  [deprecated]" if entry.deprecated else ""
    tags = f"  tags={','.join(m.tags)}" if m.tags else ""
    return (
        f"{m.ref:28} {m.model_id[:18]}…  price={opg_text(m.price_per_inference)}/inference  "
        f"owner={m.owner}{tags}{flag}"
    )


def _owner_signer(args: argparse.Namespace, settings: Settings, owner: str):
    """The signing key, which must be the manifest's owner: a registration is the owner's
    EIP-712 signature, keyed by (model id, owner), and orders pay the owner who signed the
    hub manifest."""
    from ogkit.errors import HubError

    signer = _signer(args, settings)
    if signer.address.lower() != owner.lower():
        raise HubError(
            f"key {args.key!r} ({signer.address}) is not the model's owner {owner}: "
            "pass --key with the owner's key name"
        )
    return signer


def _chain_price(chain, manifest) -> int:
    """The price per inference the ModelRegistry holds for the manifest's (model id, owner),
    with a warning on stderr when it is not the manifest's: there is one registration per
    model id and owner, so a later version of the same bytes does not change it."""
    registry = chain.contract("ModelRegistry")
    price, deprecated, name, version, _ = chain.call(
        registry.functions.getModel(bytes.fromhex(manifest.model_id[2:]), manifest.owner)
    )
    problems = []
    if int(price) != manifest.price_per_inference:
        problems.append(
            f"at {opg_text(int(price))} per inference (registered as {name}@{version}), not "
            f"{manifest.ref}'s {opg_text(manifest.price_per_inference)}: there is one "
            "registration per model id and owner, so commits charge the registered price, "
            "and orders capped below it cannot be committed (the owner changes it with "
            "ModelRegistry.setPrice)"
        )
    if deprecated:
        problems.append("deprecated: orders for it cannot be committed")
    for problem in problems:
        print(
            f"warning: {manifest.owner} registered model {manifest.model_id} on chain "
            f"{chain.chain_id} {problem}",
            file=sys.stderr,
        )
    return int(price)


def _features(args: argparse.Namespace) -> dict[str, list[str]] | None:
    return parse_input_map(args.features)


def _hub_publish(args: argparse.Namespace, settings: Settings) -> int:
    hub = _hub(settings)
    price = parse_amount(args.price)
    signer = _signer(args, settings)
    chain = None
    manifest = None
    registered: list[bool] = []
    if args.chain:
        # Register on chain first, write the hub version only once that worked: a failed
        # registration leaves nothing behind, and a retry runs both again.
        from ogkit.chain.connection import connect_from_settings
        from ogkit.settle import register_model
        from ogkit.store import content_id

        chain = connect_from_settings(settings, args.chain)
        existing = hub.index.get(args.name, args.version)
        try:
            same_bytes = existing is not None and existing.manifest.model_id == content_id(
                Path(args.path).read_bytes()
            )
        except OSError:
            same_bytes = False  # publish reports the unreadable file
        if (
            existing is not None
            and same_bytes
            and existing.manifest.price_per_inference == price
            and existing.manifest.owner.lower() == signer.address.lower()
        ):
            # The same version from an earlier run whose registration did not happen:
            # finish it instead of refusing a duplicate.
            manifest = existing.manifest
            registered.append(register_model(chain, manifest, signer))
    if manifest is None:
        manifest = hub.publish(
            args.path,
            name=args.name,
            version=args.version,
            price=price,
            signer=signer,
            description=args.description,
            tags=args.tag,
            license=args.license,
            features=_features(args),
            before_write=(
                (lambda m: registered.append(register_model(chain, m, signer)))
                if chain is not None
                else None
            ),
        )
    chain_price = _chain_price(chain, manifest) if chain is not None else None
    if args.json:
        doc = {"schema": "ogkit.hub.manifest.v1", "manifest": manifest.to_dict()}
        if chain is not None:
            doc["chain_id"] = chain.chain_id
            doc["registered"] = bool(registered and registered[0])
            doc["chain_price"] = chain_price
        print_json(doc)
    else:
        print(f"published {manifest.ref}  id {manifest.model_id}")
        if chain is not None:
            state = "registered" if registered and registered[0] else "already registered"
            print(f"{state} in the ModelRegistry on {args.chain} (chain {chain.chain_id})")
    return 0


def _hub_register(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.chain.connection import connect_from_settings
    from ogkit.settle import register_model

    manifest = _hub(settings).manifest(args.ref)
    signer = _owner_signer(args, settings, manifest.owner)
    chain = connect_from_settings(settings, args.chain)
    registered = register_model(chain, manifest, signer)
    chain_price = _chain_price(chain, manifest)
    if args.json:
        print_json(
            {
                "schema": "ogkit.hub.register.v1",
                "ref": manifest.ref,
                "model_id": manifest.model_id,
                "owner": manifest.owner,
                "chain_id": chain.chain_id,
                "registered": registered,
                "chain_price": chain_price,
            }
        )
    else:
        state = "registered" if registered else "already registered"
        print(f"{state} {manifest.ref} in the ModelRegistry on chain {chain.chain_id}")
    return 0


def _hub_list(args: argparse.Namespace, settings: Settings) -> int:
    hub = _hub(settings)
    if args.command == "search":
        entries = hub.search(args.text, tag=args.tag, owner=args.owner)
    else:
        entries = hub.list(include_deprecated=not args.live)
    if args.json:
        print_json({"schema": "ogkit.hub.list.v1", "models": [e.to_dict() for e in entries]})
    else:
        for e in entries:
            print(_entry_line(e))
        if not entries:
            print("no models found")
    return 0


def _hub_show(args: argparse.Namespace, settings: Settings) -> int:
    entry = _hub(settings).entry(args.ref)
    if args.json:
        print_json({"schema": "ogkit.hub.entry.v1", "model": entry.to_dict()})
        return 0
    m = entry.manifest
    print(_entry_line(entry))
    print(f"  id          {m.model_id}\n  size        {m.size_bytes} bytes")
    print(f"  license     {m.license or '-'}\n  description {m.description or '-'}")
    for kind, specs in (("input ", m.inputs), ("output", m.outputs)):
        for t in specs:
            print(f"  {kind}      {t.name}: {t.dtype}{list(t.shape)}")
    return 0


def _hub_pull(args: argparse.Namespace, settings: Settings) -> int:
    path = _hub(settings).pull(args.ref, args.output)
    if args.json:
        print_json({"schema": "ogkit.hub.pull.v1", "ref": args.ref, "path": str(path)})
    else:
        print(f"wrote {path}")
    return 0


def _hub_verify(args: argparse.Namespace, settings: Settings) -> int:
    report = _hub(settings).verify(args.ref)
    if args.json:
        print_json({"schema": "ogkit.hub.verify.v1", **report.to_dict()})
    else:
        print(f"{report.ref}: {'OK' if report.ok else 'FAILED'}")
        for p in report.problems:
            print(f"  - {p}")
    return 0 if report.ok else 1


def _hub_deprecate(args: argparse.Namespace, settings: Settings) -> int:
    entry = _hub(settings).deprecate(args.ref, signer=_signer(args, settings), reason=args.reason)
    if args.json:
        print_json(
            {
                "schema": "ogkit.hub.deprecate.v1",
                "ref": entry.manifest.ref,
                "model_id": entry.manifest.model_id,
                "reason": args.reason,
            }
        )
    else:
        print(f"deprecated {entry.manifest.ref}")
    return 0


def _hub_reindex(args: argparse.Namespace, settings: Settings) -> int:
    count = _hub(settings).reindex()
    if args.json:
        print_json({"schema": "ogkit.hub.reindex.v1", "indexed": count})
    else:
        print(f"indexed {count} manifests")
    return 0


def register(groups) -> None:
    hub = groups.add_parser("hub", help="the model hub").add_subparsers(
        dest="command", required=True
    )
    p = add_command(hub, "publish", _hub_publish, "publish a new model version")
    p.add_argument("path", type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--version", required=True, help="semantic version, e.g. 1.0.0")
    p.add_argument("--price", required=True, help="per inference: base units or e.g. 0.01opg")
    p.add_argument("--tag", action="append", default=[], help="repeatable")
    p.add_argument("--description", default="")
    p.add_argument("--license", default="")
    p.add_argument(
        "--features",
        action="append",
        default=[],
        metavar="INPUT=COL[,COL...]",
        help="the dataset columns each input is built from, in order (repeatable): infer and "
        "verifiers then bind columns by these names, never by position",
    )
    p.add_argument("--key", default="owner", help="signing key name (default: owner)")
    p.add_argument("--chain", help="also register it on this chain (devnet, URL); registered first")
    p = add_command(
        hub, "register", _hub_register, "register a published version in the on-chain registry"
    )
    p.add_argument("ref", help="name@version (or name, or 0x model id)")
    chain_option(p)
    p.add_argument("--key", default="owner", help="the owner's key name (default: owner)")
    p = add_command(hub, "list", _hub_list, "list published models")
    p.add_argument("--live", action="store_true", help="hide deprecated versions")
    p = add_command(hub, "search", _hub_list, "search by name substring, tag or owner")
    p.add_argument("text", nargs="?")
    p.add_argument("--tag")
    p.add_argument("--owner")
    p = add_command(hub, "show", _hub_show, "show one model version")
    p.add_argument("ref", help="name, name@version or 0x model id")
    p = add_command(hub, "pull", _hub_pull, "write a verified model file")
    p.add_argument("ref")
    p.add_argument("-o", "--output", type=Path, required=True)
    p = add_command(hub, "verify", _hub_verify, "check a manifest's signature and its blob's hash")
    p.add_argument("ref")
    p = add_command(hub, "deprecate", _hub_deprecate, "deprecate a version (owner only)")
    p.add_argument("ref")
    p.add_argument("--reason", default="")
    p.add_argument("--key", default="owner")
    add_command(hub, "reindex", _hub_reindex, "rebuild the index from the store")

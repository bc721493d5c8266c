"""``ogkit zk export | setup | prove | verify``: ZK proofs of inference with EZKL."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ogkit.cli.common import add_command, chain_option, print_json
from ogkit.errors import ConfigError
from ogkit.settings import Settings

__all__ = ["register"]


def _model_bytes(ref: str, settings: Settings) -> bytes:
    if ref.endswith(".onnx"):
        path = Path(ref)
        if not path.is_file():
            raise ConfigError(f"model file {path} does not exist")
        return path.read_bytes()
    from ogkit.hub import Hub

    if ref.startswith("0x"):
        return Hub(settings.store, home=settings.home).blob(ref)
    return Hub(settings.store, home=settings.home).model_bytes(ref)[1]


def _arrays(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    import numpy as np

    p = Path(path)
    if p.suffix != ".npz" or not p.is_file():
        raise ConfigError(f"{p} is not an .npz file of arrays named by model input")
    with np.load(p, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _rows(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        rows = [int(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise ConfigError(f"--rows takes row indices separated by commas, not {text!r}") from None
    if not rows or any(r < 0 for r in rows):
        raise ConfigError("--rows needs at least one row index >= 0")
    return rows


def _store(settings: Settings) -> Any:
    from ogkit.store import ContentStore

    return ContentStore(settings.store)


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.zk.export import export_model

    profile, _, _ = export_model(
        _model_bytes(args.model, settings),
        chunk=args.chunk,
        store=_store(settings),
        calibration=_arrays(args.calibration),
        input_scale=args.scale,
        tolerance=args.tolerance,
        max_logrows=args.max_logrows,
        max_memory_bytes=int(args.max_memory_gib * 2**30),
    )
    doc = {"schema": "ogkit.zk.export.v1", "profile_id": profile.profile_id, **profile.to_dict()}
    if args.json:
        print_json(doc)
    else:
        print(
            f"exported {profile.model_id} for N={profile.chunk}: scale {profile.input_scale}, "
            f"2^{profile.logrows} rows, tolerance {profile.tolerances}, measured error "
            f"{profile.measured_error}; profile {profile.profile_id}"
        )
    return 0


def _setup(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.store import content_id
    from ogkit.zk.keys import setup_keys
    from ogkit.zk.profile import load_profile

    store = _store(settings)
    model = _model_bytes(args.model, settings)
    profile = load_profile(store, content_id(model), args.chunk)
    if args.check:
        from ogkit.zk.keys import check_keys, load_keys

        keys = load_keys(store, profile)
        problems = check_keys(store, profile, keys, model)
        if args.json:
            print_json(
                {
                    "schema": "ogkit.zk.check.v1",
                    "keys_id": keys.keys_id,
                    "ok": not problems,
                    "problems": problems,
                }
            )
        else:
            print(("OK" if not problems else "FAIL") + f" keys {keys.keys_id}")
            for p in problems:
                print(f"  {p}")
        return 0 if not problems else 1
    keys = setup_keys(store, profile, srs_file=args.srs, force=args.force)
    doc: dict[str, Any] = {"schema": "ogkit.zk.setup.v1", **keys.to_dict()}
    if args.evm:
        from ogkit.zk.evm import EIP170_LIMIT, ensure_verifier

        art = ensure_verifier(store, profile, keys, allow_oversize=True)
        doc["verifier"] = {"kind": "single", "code_size": art["code_size"],
                           "compiler": art["compiler"]}  # fmt: skip
        if args.reusable or (art["code_size"] > EIP170_LIMIT and not args.allow_oversize):
            # Over EIP-170 (or asked for): ezkl's reusable verifier and this profile's VKA.
            from ogkit.zk.reusable import adapter_artifact, ensure_reusable_verifier, ensure_vka

            rart = ensure_reusable_verifier(store, profile, keys)
            doc["verifier"] = {
                "kind": "reusable",
                "code_size": adapter_artifact()["code_size"],
                "compiler": rart["compiler"],
                "reusable_code_size": rart["code_size"],
                "vka_bytes": len(ensure_vka(store, profile, keys)) - 8,
                "single_code_size": art["code_size"],
            }
    if args.json:
        print_json(doc)
    else:
        kind = "DEVELOPMENT-ONLY SRS" if keys.srs_kind == "development" else "SRS from file"
        print(f"keys {keys.keys_id} for {profile.model_id} N={keys.chunk} ({kind})")
        v = doc.get("verifier")
        if v and v["kind"] == "reusable":
            print(
                f"EVM: the generated verifier is {v['single_code_size']:,} bytes; using ezkl's "
                f"reusable verifier ({v['reusable_code_size']:,} bytes, once per chain) and a "
                f"ZkVkVerifier adapter ({v['code_size']:,} bytes, VKA {v['vka_bytes']:,} bytes)"
            )
        elif v:
            print(f"EVM verifier: {v['code_size']:,} bytes")
    return 0


def _prove(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.batch import load_batch
    from ogkit.zk.batch import prove_batch_rows

    store = _store(settings)
    batch = load_batch(args.artifact, store)
    rows = _rows(args.rows) or []
    proofs = prove_batch_rows(
        batch, store, rows, chunk=args.chunk, inputs=_arrays(args.inputs), progress=not args.json
    )
    if args.json:
        print_json(
            {
                "schema": "ogkit.zk.prove.v1",
                "batch_id": batch.batch_id,
                "rows": rows,
                "proofs": len(proofs),
                "seconds": [round(p.seconds, 3) for p in proofs],
            }
        )
    else:
        print(f"proved rows {rows} of {batch.batch_id} in {len(proofs)} proof(s)")
    return 0


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.batch import load_batch
    from ogkit.zk.batch import zk_findings

    store = _store(settings)
    batch = load_batch(args.artifact, store)
    findings = zk_findings(
        batch, store, chunk=args.chunk, inputs=_arrays(args.inputs), rows=_rows(args.rows)
    )
    passed = not findings
    if args.json:
        print_json(
            {
                "schema": "ogkit.zk.verify.v1",
                "batch_id": batch.batch_id,
                "passed": passed,
                "findings": [
                    {"reason": f.reason, "row_index": f.row, "detail": f.detail} for f in findings
                ],
            }
        )
    else:
        print(("PASS" if passed else "FAIL") + f" ZK proofs of {batch.batch_id}")
        for f in findings:
            print(f"  {f.reason} row {f.row}: {f.detail}")
    return 0 if passed else 1


def _chain_and_key(args: argparse.Namespace, settings: Settings) -> tuple[Any, Any]:
    from ogkit.chain.connection import connect_from_settings
    from ogkit.keys import KeyStore

    signer = KeyStore(settings.home).load(args.key)
    return connect_from_settings(settings, args.chain), signer


def _profile_and_keys(store: Any, model: bytes, chunk: int) -> tuple[Any, Any]:
    from ogkit.store import content_id
    from ogkit.zk.keys import load_keys
    from ogkit.zk.profile import load_profile

    profile = load_profile(store, content_id(model), chunk)
    return profile, load_keys(store, profile)


def _deploy(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.zk.evm import register_profile
    from ogkit.zk.reusable import deploy_profile_verifier

    store = _store(settings)
    profile, keys = _profile_and_keys(store, _model_bytes(args.model, settings), args.chunk)
    chain, owner = _chain_and_key(args, settings)
    # The generated verifier when it fits EIP-170, else (or with --reusable) ezkl's reusable
    # verifier, deployed once per chain, and a ZkVkVerifier adapter holding this VKA.
    out = deploy_profile_verifier(
        chain, owner, store, profile, keys, reusable=True if args.reusable else None
    )
    address = out["verifier"]
    register_profile(chain, owner, profile, keys, address)
    doc = {
        "schema": "ogkit.zk.deploy.v1",
        **out,
        "owner": owner.address,
        "keys_id": keys.keys_id,
        "model_id": profile.model_id,
    }
    if args.json:
        print_json(doc)
    else:
        how = f"verifier {address} ({out['code_size']:,} bytes)"
        if out["kind"] == "reusable":
            how = (
                f"adapter {address} ({out['code_size']:,} bytes, VKA {out['vka_bytes']:,} "
                f"bytes) on the reusable verifier {out['reusable_verifier']} "
                f"({out['reusable_code_size']:,} bytes)"
            )
        print(
            f"{how} registered for {profile.model_id} by {owner.address}; awaiting the "
            "governor's approval"
        )
    return 0


def _approve(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.zk.evm import review_and_approve

    store = _store(settings)
    model = _model_bytes(args.model, settings)
    profile, keys = _profile_and_keys(store, model, args.chunk)
    if args.key:
        chain, governor = _chain_and_key(args, settings)
    else:  # a dev chain: the deployer is the ZkJudge's governor
        from ogkit.chain.connection import connect_from_settings

        chain = connect_from_settings(settings, args.chain)
        governor = chain.deployer
        if governor is None:
            raise ConfigError(f"on {chain.name} pass --key: the ZkJudge's governor's key")
    # The approval names the layout hash and verifier the review read: an owner that
    # re-registers in between makes it revert instead of getting its new profile approved.
    problems = review_and_approve(chain, governor, store, profile, keys, model, args.owner)
    if args.json:
        print_json(
            {
                "schema": "ogkit.zk.approve.v1",
                "approved": not problems,
                "problems": problems,
                "keys_id": keys.keys_id,
            }
        )
    else:
        print(("approved" if not problems else "NOT approved") + f" keys {keys.keys_id}")
        for p in problems:
            print(f"  {p}")
    return 0 if not problems else 1


def _dispute(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.batch import load_batch
    from ogkit.zk.evm import answer_with_proof, challenge_with_proof

    store = _store(settings)
    batch = load_batch(args.artifact, store)
    chain, signer = _chain_and_key(args, settings)
    inputs = _arrays(args.inputs)
    if args.command == "challenge":
        out = challenge_with_proof(
            chain, batch, args.row, challenger=signer, store=store, chunk=args.chunk, inputs=inputs
        )
    else:
        out = answer_with_proof(
            chain, batch, node=signer, store=store, chunk=args.chunk, inputs=inputs
        )
    if args.json:
        print_json({"schema": "ogkit.zk.dispute.v1", "batch_id": batch.batch_id, **out})
    elif out["outcome"] == "undecidable":
        # A near tie (docs/spec.md §13.5): the proof neither slashes nor clears the node.
        print(
            f"dispute {out['dispute']} on {batch.batch_id} stays open: the proof neither "
            f"confirms nor refutes the row (output {out['tensor']}: a label at a near tie, or "
            "a float beyond its tolerance but within twice it).\n"
            "Verifiers decide it by re-executing the row: ogkit dispute vote "
            f"{batch.batch_id} --upheld|--rejected --key VERIFIER (ogkit dispute show "
            f"{batch.batch_id} for the votes; ogkit dispute resolve after the voting time)"
        )
    else:
        verdict = "upheld: the node is slashed" if out["upheld"] else "rejected"
        print(f"dispute {out['dispute']} on {batch.batch_id} {verdict} ({out['gas']:,} gas)")
    return 0


def register(groups) -> None:
    zk = groups.add_parser("zk", help="ZK proofs of inference (EZKL)").add_subparsers(
        dest="command", required=True
    )
    p = add_command(zk, "export", _export, "rewrite a model for ezkl and fix its ZK profile")
    p.add_argument("model", help="hub reference (name@version, 0x id) or .onnx path")
    p.add_argument("--chunk", type=int, default=1, help="rows per proof, N (default 1)")
    p.add_argument("--scale", type=int, default=10, help="fixed-point scale: 2^scale")
    p.add_argument(
        "--tolerance", type=float, default=0.01, help="stated |proof - receipt| per float output"
    )
    p.add_argument("--calibration", help=".npz of model inputs (default: seeded normal rows)")
    p.add_argument("--max-logrows", type=int, default=20, help="largest circuit, 2^rows")
    p.add_argument(
        "--max-memory-gib", type=float, default=16.0, help="refuse circuits needing more"
    )
    p = add_command(zk, "setup", _setup, "proving and verifying keys (and the EVM verifier)")
    p.add_argument("model", help="hub reference (name@version, 0x id) or .onnx path")
    p.add_argument("--chunk", type=int, default=1)
    p.add_argument(
        "--srs", help="SRS file of a public ceremony (default: a DEVELOPMENT-ONLY gen_srs)"
    )
    p.add_argument("--force", action="store_true", help="make new keys even if cached")
    p.add_argument(
        "--check",
        action="store_true",
        help="re-derive the rewritten model and the verifying key and compare (exit 1 if not)",
    )
    p.add_argument("--evm", action="store_true", help="also generate and compile the verifier")
    p.add_argument(
        "--allow-oversize",
        action="store_true",
        help="accept a verifier above 24,576 bytes (devnets with a raised code-size limit)",
    )
    p.add_argument(
        "--reusable",
        action="store_true",
        help="ezkl's reusable verifier and the VKA even when the generated one fits EIP-170",
    )
    p = add_command(zk, "prove", _prove, "prove rows of a stored batch")
    p.add_argument("artifact", help="artefact id (0x…) or manifest path")
    p.add_argument("--rows", required=True, help="row indices, comma-separated")
    p.add_argument("--chunk", type=int, default=1)
    p.add_argument("--inputs", help=".npz of the requester's inputs (if records hold none)")
    p = add_command(zk, "verify", _verify, "verify a batch's ZK proofs and their binding")
    p.add_argument("artifact", help="artefact id (0x…) or manifest path")
    p.add_argument("--rows", help="rows that must be proven (default: those proofs name)")
    p.add_argument("--chunk", type=int, default=1)
    p.add_argument("--inputs", help=".npz of the requester's inputs (if records hold none)")
    p = add_command(zk, "deploy", _deploy, "deploy the EVM verifier and register the profile")
    p.add_argument("model", help="hub reference (name@version, 0x id) or .onnx path")
    p.add_argument("--chunk", type=int, default=1)
    p.add_argument(
        "--reusable",
        action="store_true",
        help="ezkl's reusable verifier and an adapter even when the generated verifier fits "
        "EIP-170 (chosen on its own when it does not)",
    )
    p.add_argument("--key", default="owner", help="the model owner's key (default owner)")
    chain_option(p)
    p = add_command(zk, "approve", _approve, "review a registered profile and approve it")
    p.add_argument("model", help="hub reference (name@version, 0x id) or .onnx path")
    p.add_argument("--owner", required=True, help="the address that registered the profile")
    p.add_argument("--chunk", type=int, default=1)
    p.add_argument("--key", help="the ZkJudge's governor (default: a dev chain's deployer)")
    chain_option(p)
    p = add_command(zk, "challenge", _dispute, "challenge a row and settle it with a proof")
    p.add_argument("artifact", help="artefact id (0x…) or manifest path")
    p.add_argument("row", type=int, help="the row to challenge")
    p.add_argument("--chunk", type=int, default=1)
    p.add_argument("--inputs", help=".npz of the requester's inputs (if records hold none)")
    p.add_argument("--key", default="challenger", help="the challenger's key")
    chain_option(p)
    p = add_command(zk, "answer", _dispute, "answer a batch's open dispute with a proof")
    p.add_argument("artifact", help="artefact id (0x…) or manifest path")
    p.add_argument("--chunk", type=int, default=1)
    p.add_argument("--inputs", help=".npz of the requester's inputs (if records hold none)")
    p.add_argument("--key", default="node", help="the node's key")
    chain_option(p)

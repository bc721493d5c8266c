"""The requester-signed JobOrder: its EIP-712 encoding (checked against a hand-rolled one),
real eth-account signatures, strict parsing, files, and ``ogkit order new | sign | show``."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address

from ogkit.attest import derive_batch_id, execution_hash
from ogkit.cli import main
from ogkit.dataset import DatasetCommitment
from ogkit.errors import OrderError, SignatureError
from ogkit.keys import SECP256K1_N, KeyStore, Signer
from ogkit.order import (
    ORDER_TYPE_STRING,
    JobOrder,
    SignedOrder,
    check_order_matches,
    load_order,
    new_order,
    save_order,
)

REQUESTER = Signer("requester", Account.from_key("0x" + "11" * 32))
OTHER = Signer("other", Account.from_key("0x" + "22" * 32))
OWNER = to_checksum_address("0x" + "a1" * 20)
NODE = to_checksum_address("0x" + "b2" * 20)
CONTRACT = to_checksum_address("0x" + "c3" * 20)
MODEL = "0x" + "d4" * 32
ROOT = "0x" + "e5" * 32
NOW = 1_750_000_000


def make_order(**overrides) -> JobOrder:
    fields = {
        "requester": REQUESTER.address,
        "model_id": MODEL,
        "model_owner": OWNER,
        "commitment": DatasetCommitment(ROOT, 1000),
        "job": "nightly-scoring",
        "node": NODE,
        "max_price_per_row": 10**16,
        "chain_id": 31337,
        "verifying_contract": CONTRACT,
        "deadline": NOW + 3600,
        "nonce": 2**100 + 7,
        "now": NOW,
    }
    return new_order(**{**fields, **overrides})


# -- what is signed ---------------------------------------------------------------------------
def test_type_string_is_the_contracts() -> None:
    assert ORDER_TYPE_STRING == (
        "JobOrder(address requester,bytes32 modelId,address modelOwner,bytes32 datasetId,"
        "bytes32 jobHash,uint64 maxRows,uint256 maxPricePerRow,address node,uint64 deadline,"
        "uint256 nonce)"
    )


def test_digest_equals_an_independent_computation() -> None:
    order = make_order()
    # By hand, from the EIP-712 spec and the literal type strings.
    domain_type = (
        b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    )
    domain_separator = keccak(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [keccak(domain_type), keccak(b"ogkit"), keccak(b"1"), 31337, CONTRACT],
        )
    )
    order_type = (
        b"JobOrder(address requester,bytes32 modelId,address modelOwner,bytes32 datasetId,"
        b"bytes32 jobHash,uint64 maxRows,uint256 maxPricePerRow,address node,uint64 deadline,"
        b"uint256 nonce)"
    )
    struct_hash = keccak(
        abi_encode(
            [
                "bytes32",
                "address",
                "bytes32",
                "address",
                "bytes32",
                "bytes32",
                "uint64",
                "uint256",
                "address",
                "uint64",
                "uint256",
            ],
            [
                keccak(order_type),
                REQUESTER.address,
                bytes.fromhex(MODEL[2:]),
                OWNER,
                bytes.fromhex(ROOT[2:]),
                keccak(b"nightly-scoring"),
                1000,
                10**16,
                NODE,
                NOW + 3600,
                2**100 + 7,
            ],
        )
    )
    by_hand = "0x" + keccak(b"\x19\x01" + domain_separator + struct_hash).hex()
    assert order.digest() == by_hand
    assert order.job_hash == "0x" + keccak(b"nightly-scoring").hex()

    # And through eth-account, from a message written out independently of the order.
    message = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "JobOrder": [
                {"name": n, "type": t}
                for t, n in (part.split(" ") for part in order_type.decode()[9:-1].split(","))
            ],
        },
        "primaryType": "JobOrder",
        "domain": {
            "name": "ogkit",
            "version": "1",
            "chainId": 31337,
            "verifyingContract": CONTRACT,
        },
        "message": {
            "requester": REQUESTER.address,
            "modelId": MODEL,
            "modelOwner": OWNER,
            "datasetId": ROOT,
            "jobHash": "0x" + keccak(b"nightly-scoring").hex(),
            "maxRows": 1000,
            "maxPricePerRow": 10**16,
            "node": NODE,
            "deadline": NOW + 3600,
            "nonce": 2**100 + 7,
        },
    }
    signable = encode_typed_data(full_message=message)
    assert "0x" + keccak(b"\x19" + signable.version + signable.header + signable.body).hex() == (
        by_hand
    )


def test_as_tuple_is_the_struct_in_order() -> None:
    order = make_order()
    assert order.as_tuple() == (
        REQUESTER.address,
        bytes.fromhex(MODEL[2:]),
        OWNER,
        bytes.fromhex(ROOT[2:]),
        keccak(b"nightly-scoring"),
        1000,
        10**16,
        NODE,
        NOW + 3600,
        2**100 + 7,
    )
    assert order.domain.to_dict()["verifyingContract"] == CONTRACT


def test_batch_id_is_derive_batch_id_of_the_orders_fields() -> None:
    order = make_order()
    execution = execution_hash({"partition_rows": 100, "batch_size": 10})
    assert order.batch_id(execution) == derive_batch_id(
        model_id=MODEL,
        dataset_id=ROOT,
        requester=REQUESTER.address,
        chain_id=31337,
        verifying_contract=CONTRACT,
        job="nightly-scoring",
        execution=execution,
    )
    assert make_order(job="other").batch_id(execution) != order.batch_id(execution)


# -- signatures -------------------------------------------------------------------------------
def test_sign_and_verify_round_trip() -> None:
    signed = make_order().sign(REQUESTER)
    assert signed.verify() == REQUESTER.address
    assert SignedOrder.from_dict(signed.to_dict()) == signed
    assert SignedOrder.from_dict(json.loads(json.dumps(signed.to_dict()))).verify()


def test_only_the_requester_signs() -> None:
    with pytest.raises(OrderError, match="requester") as err:
        make_order().sign(OTHER)
    assert err.value.field == "requester"


@pytest.mark.parametrize(
    "change",
    [
        {"model_id": "0x" + "00" * 32},
        {"dataset_id": "0x" + "01" * 32},
        {"job": "nightly-scoring2"},
        {"max_rows": 1001},
        {"max_price_per_row": 10**16 + 1},
        {"node": OWNER},
        {"deadline": NOW + 3601},
        {"nonce": 1},
        {"chain_id": 1},
        {"verifying_contract": NODE},
        {"model_owner": NODE},
    ],
    ids=lambda c: next(iter(c)),
)
def test_a_tampered_field_fails_verify(change) -> None:
    signed = make_order().sign(REQUESTER)
    tampered = SignedOrder(replace(signed.order, **change), signed.signature)
    with pytest.raises(SignatureError, match="not by its requester"):
        tampered.verify()


def test_a_signature_by_another_key_fails() -> None:
    order = make_order()
    forged = SignedOrder(order, OTHER.sign_typed_data(order.typed_data()))
    assert forged.recover_signer() == OTHER.address
    with pytest.raises(SignatureError, match=f"signed by {OTHER.address}"):
        forged.verify()
    # Claiming to be the other key changes the order, so the signature no longer recovers it.
    relabelled = SignedOrder(replace(order, requester=OTHER.address), forged.signature)
    with pytest.raises(SignatureError):
        relabelled.verify()


def _split(sig: str) -> tuple[int, int, int]:
    raw = bytes.fromhex(sig[2:])
    return int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]


def _join(r: int, s: int, v: int) -> str:
    return "0x" + (r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])).hex()


def test_non_canonical_signatures_are_refused() -> None:
    signed = make_order().sign(REQUESTER)
    r, s, v = _split(signed.signature)
    high_s = _join(r, SECP256K1_N - s, 55 - v)
    low_v = _join(r, s, v - 27)
    # eth-account would take the high-s twin as the same signer; OpenZeppelin would not.
    signable = encode_typed_data(full_message=signed.order.typed_data())
    assert Account.recover_message(signable, signature=high_s) == REQUESTER.address
    for bad in (high_s, low_v, signed.signature[:-2], "0x" + "00" * 65):
        with pytest.raises(SignatureError):
            SignedOrder(signed.order, bad).verify()
        doc = {**signed.to_dict(), "signature": bad}
        with pytest.raises(OrderError, match="signature") as err:
            SignedOrder.from_dict(doc)
        assert err.value.field == "signature"


# -- strict parsing ---------------------------------------------------------------------------
BAD_FIELDS = [
    ("requester", "0x1234"),
    ("requester", 12),
    ("requester", "0x" + "A1" * 10 + "a1" * 10),  # mixed case, not the checksum
    ("model_id", "0x" + "d4" * 31),
    ("model_id", "d4" * 32),
    ("model_owner", None),
    ("dataset_id", "0x" + "zz" * 32),
    ("job", ""),
    ("job", 7),
    ("job", "j" * 2000),
    ("max_rows", 0),
    ("max_rows", "1000"),
    ("max_rows", True),
    ("max_rows", 2**64),
    ("max_price_per_row", 10**16),  # an int, not the decimal string
    ("max_price_per_row", "-1"),
    ("max_price_per_row", "1e16"),
    ("max_price_per_row", "007"),
    ("max_price_per_row", str(2**256)),
    ("node", "0x" + "b2" * 21),
    ("deadline", -1),
    ("deadline", 1.5),
    ("nonce", "0x10"),
    ("nonce", "9" * 100),
    ("chain_id", 0),
    ("chain_id", "31337"),
    ("verifying_contract", ""),
    ("job_hash", "0x" + "00" * 32),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS, ids=lambda x: str(x)[:20])
def test_from_dict_rejects_each_malformed_field(field, value) -> None:
    good = make_order().to_dict()
    assert JobOrder.from_dict(good) == make_order()
    with pytest.raises(OrderError, match=field) as err:
        JobOrder.from_dict({**good, field: value})
    assert err.value.field == field


def test_from_dict_rejects_missing_and_unknown_keys() -> None:
    good = make_order().to_dict()
    with pytest.raises(OrderError, match="lacks nonce"):
        JobOrder.from_dict({k: v for k, v in good.items() if k != "nonce"})
    with pytest.raises(OrderError, match="unknown fields: price"):
        JobOrder.from_dict({**good, "price": "1"})
    with pytest.raises(OrderError, match="JSON object"):
        JobOrder.from_dict([good])
    with pytest.raises(OrderError, match="schema"):
        SignedOrder.from_dict({**make_order().sign(REQUESTER).to_dict(), "schema": "x"})


def test_fields_are_normalised() -> None:
    order = make_order(
        requester=REQUESTER.address.lower(), model_id=MODEL.upper().replace("X", "x")
    )
    assert order.requester == REQUESTER.address
    assert order.model_id == MODEL


# -- building an order ------------------------------------------------------------------------
def test_new_order_defaults() -> None:
    before = int(time.time())
    order = new_order(
        requester=REQUESTER.address,
        model_id=MODEL,
        model_owner=OWNER,
        commitment=(ROOT, 250),
        job="j",
        node=NODE,
        max_price_per_row=0,
        chain_id=31337,
        verifying_contract=CONTRACT,
    )
    assert order.max_rows == 250
    assert before + 86400 <= order.deadline <= int(time.time()) + 86400
    assert 0 <= order.nonce < 2**128
    other = make_order(nonce=None)
    assert other.nonce != make_order(nonce=None).nonce
    assert make_order(deadline=None, ttl=60).deadline == NOW + 60


def test_new_order_reports_every_problem_at_once() -> None:
    with pytest.raises(OrderError) as err:
        make_order(deadline=NOW - 1, max_rows=10, node="nobody", max_price_per_row=-1)
    assert [p.split()[1] for p in err.value.problems] == [
        "deadline",
        "max_rows",
        "max_price_per_row",
        "node",
    ]
    assert err.value.field == "deadline"
    assert "4 problems" in str(err.value)
    with pytest.raises(OrderError, match="at least one row"):
        make_order(commitment=(ROOT, 0))
    with pytest.raises(OrderError, match="both given"):
        make_order(ttl=60)


def test_zero_node_is_allowed_and_logged(caplog) -> None:
    order = make_order(node="0x" + "00" * 20)
    assert order.open_to_any_node
    assert "any staked node" in caplog.text


# -- the node's check -------------------------------------------------------------------------
JOB = {
    "model_id": MODEL,
    "dataset_id": ROOT,
    "requester": REQUESTER.address.lower(),
    "job": "nightly-scoring",
    "row_count": 1000,
    "chain_id": 31337,
    "verifying_contract": CONTRACT.lower(),
}


def test_check_order_matches() -> None:
    signed = make_order().sign(REQUESTER)
    assert check_order_matches(signed, **JOB, node=NODE, price_per_row=10**16, now=NOW) == (
        signed.order
    )
    assert check_order_matches(signed.order, **{**JOB, "row_count": 1}, now=NOW)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"chain_id": 1}, "chain_id"),
        ({"verifying_contract": NODE}, "verifying_contract"),
        ({"requester": OTHER.address}, "requester"),
        ({"model_id": "0x" + "00" * 32}, "model_id"),
        ({"model_owner": NODE}, "model_owner"),
        ({"dataset_id": "0x" + "00" * 32}, "dataset_id"),
        ({"job": "nightly"}, "job"),
        ({"row_count": 1001}, "max_rows"),
        ({"row_count": 0}, "max_rows"),
        ({"price_per_row": 10**16 + 1}, "max_price_per_row"),
        ({"node": OWNER}, "node"),
        ({"now": NOW + 3601}, "deadline"),
        # Several wrong at once: the first in the struct's order is named.
        ({"job": "x", "model_id": "0x" + "00" * 32}, "model_id"),
    ],
    ids=lambda x: str(x)[:30],
)
def test_check_order_matches_names_the_first_mismatch(change, field) -> None:
    args = {**JOB, "node": NODE, "model_owner": OWNER, "price_per_row": 1, "now": NOW, **change}
    with pytest.raises(OrderError) as err:
        check_order_matches(make_order(), **args)
    assert err.value.field == field
    assert field in str(err.value)


def test_any_node_order_matches_every_node() -> None:
    order = make_order(node="0x" + "00" * 20)
    assert check_order_matches(order, **JOB, node=OWNER, now=NOW)


def test_check_order_matches_verifies_a_signed_order() -> None:
    signed = make_order().sign(REQUESTER)
    forged = SignedOrder(replace(signed.order, max_rows=10**6), signed.signature)
    with pytest.raises(SignatureError):
        check_order_matches(forged, **JOB, now=NOW)


# -- files ------------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path: Path) -> None:
    signed = make_order().sign(REQUESTER)
    path = signed.save(tmp_path / "sub" / "order.json")
    assert SignedOrder.load(path) == signed
    assert load_order(path) == signed
    doc = json.loads(path.read_text())
    assert doc["order"]["nonce"] == str(2**100 + 7)  # uint256 as a decimal string
    assert [p.name for p in path.parent.iterdir()] == ["order.json"]  # no temp file left

    unsigned = save_order(make_order(), tmp_path / "unsigned.json")
    assert load_order(unsigned) == make_order()
    with pytest.raises(OrderError, match="not signed: sign it with `ogkit order sign"):
        SignedOrder.load(unsigned)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not valid JSON"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b'{"schema": "ogkit.order.v1", "schema": "x"}', "repeats a key"),
        (b"[]", "JSON object"),
        (b'{"schema": "ogkit.manifest.v1"}', "not an ogkit order"),
        (b"x" * 70_000, "not an ogkit order"),
    ],
    ids=lambda x: str(x)[:15],
)
def test_garbled_files_give_clear_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "order.json"
    path.write_bytes(content)
    with pytest.raises(OrderError, match=message) as err:
        load_order(path)
    assert str(path) in str(err.value)


def test_a_missing_file_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(OrderError, match=r"no order file at .*`ogkit order new"):
        SignedOrder.load(tmp_path / "nope.json")


def test_a_bad_field_in_a_file_names_file_and_field(tmp_path: Path) -> None:
    path = make_order().sign(REQUESTER).save(tmp_path / "order.json")
    doc = json.loads(path.read_text())
    doc["order"]["max_rows"] = -5
    path.write_text(json.dumps(doc))
    with pytest.raises(OrderError, match="max_rows") as err:
        load_order(path)
    assert err.value.field == "max_rows"
    assert str(path) in str(err.value)


# -- the CLI ----------------------------------------------------------------------------------
def _offline(*extra: str) -> list[str]:
    return ["--chain-id", "31337", "--contract", CONTRACT, *extra]


def test_cli_new_then_show(home: Path, tmp_path: Path, capsys) -> None:
    requester = KeyStore(home).ensure_dev_key("requester")
    out = tmp_path / "order.json"
    argv = ["order", "new", "--model", MODEL, "--owner", OWNER, "--commitment", f"{ROOT}:1000"]
    argv += ["--job", "nightly", "--node", NODE, "--max-price", "0.01opg", "--deadline", "2h"]
    argv += ["--nonce", "42", "--out", str(out), *_offline("--json")]
    assert main(argv) == 0, capsys.readouterr().err
    written = json.loads(capsys.readouterr().out)
    assert written["schema"] == "ogkit.order.written.v1"
    assert written["signature_valid"] is True

    assert main(["order", "show", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "ogkit.order.show.v1"
    assert doc["signed"] and doc["signature_valid"] and doc["signer"] == requester.address
    order = doc["order"]
    assert order["requester"] == requester.address
    assert order["max_price_per_row"] == str(10**16)
    assert order["max_rows"] == 1000
    assert order["nonce"] == "42"
    assert order["chain_id"] == 31337 and order["verifying_contract"] == CONTRACT
    assert abs(order["deadline"] - (time.time() + 7200)) < 60
    loaded = SignedOrder.load(out)
    assert loaded.verify() == requester.address
    assert doc["digest"] == loaded.order.digest()

    assert main(["order", "show", str(out)]) == 0
    text = capsys.readouterr().out
    assert "valid, by the requester" in text and "0.01 OPG per row" in text

    # The file is not overwritten without --force.
    assert main(argv) == 1
    assert "--force" in capsys.readouterr().err


def test_cli_unsigned_then_sign(home: Path, tmp_path: Path, capsys) -> None:
    keys = KeyStore(home)
    requester = keys.ensure_dev_key("alice")
    keys.ensure_dev_key("mallory")
    out = tmp_path / "order.json"
    argv = ["order", "new", "--model", MODEL, "--owner", OWNER, "--commitment", f"{ROOT}:10"]
    argv += ["--node", NODE, "--max-price", "1000", "--requester", "alice", "--unsigned"]
    assert main([*argv, "--out", str(out), *_offline()]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["order", "show", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["signed"] is False and doc["signature_valid"] is None

    assert main(["order", "sign", str(out), "--key", "mallory"]) == 1
    err = capsys.readouterr().err
    assert "not the order's requester" in err and "--key alice" in err
    assert isinstance(load_order(out), JobOrder)

    assert main(["order", "sign", str(out), "--key", "alice", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["signature_valid"] is True
    assert SignedOrder.load(out).verify() == requester.address


def test_cli_show_flags_a_bad_signature(home: Path, tmp_path: Path, capsys) -> None:
    signed = make_order(deadline=int(time.time()) + 60, now=None).sign(REQUESTER)
    forged = SignedOrder(replace(signed.order, max_rows=5000), signed.signature)
    path = forged.save(tmp_path / "forged.json")
    assert main(["order", "show", str(path)]) == 1
    assert "INVALID" in capsys.readouterr().out


def test_cli_domain_options_are_checked(home: Path, tmp_path: Path, capsys) -> None:
    KeyStore(home).ensure_dev_key("requester")
    argv = ["order", "new", "--model", MODEL, "--owner", OWNER, "--commitment", f"{ROOT}:10"]
    argv += ["--node", NODE, "--max-price", "1", "--out", str(tmp_path / "o.json")]
    assert main([*argv, "--chain-id", "31337"]) == 1
    assert "--contract" in capsys.readouterr().err
    assert main([*argv, *_offline("--deadline", "0")]) == 1
    assert "--deadline" in capsys.readouterr().err
    assert main([*argv, *_offline("--commitment", "nope")]) == 1
    assert "ogkit commit" in capsys.readouterr().err


def test_cli_new_reads_owner_and_price_from_the_hub(
    published, home: Path, tmp_path: Path, capsys
) -> None:
    KeyStore(home).ensure_dev_key("requester")
    manifest = published.manifest("tab@1.0.0")
    out = tmp_path / "order.json"
    argv = ["order", "new", "--model", "tab@1.0.0", "--commitment", f"{ROOT}:10", "--node", NODE]
    assert main([*argv, "--out", str(out), *_offline("--json")]) == 0, capsys.readouterr().err
    order = SignedOrder.load(out).order
    assert order.model_id == manifest.model_id
    assert order.model_owner == to_checksum_address(manifest.owner)
    assert order.max_price_per_row == manifest.price_per_inference
    capsys.readouterr()

    assert main([*argv, "--owner", NODE, "--out", str(tmp_path / "x.json"), *_offline()]) == 1
    assert "is not the owner of tab@1.0.0" in capsys.readouterr().err

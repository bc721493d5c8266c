"""Tampered receipts fail in ogkit's ``verify_receipt`` and, where those libraries can
tell, in OpenZeppelin's SimpleMerkleTree + ethers (``tests/js/verify_receipts.mjs``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tamper import RECEIPT_CLASSES, REPO, Honest, js_accepts_good, js_verdict, ogkit_receipt_check

from ogkit.errors import ReceiptError

CASES = [pytest.param(c, id=c.name) for c in RECEIPT_CLASSES]
NODE = shutil.which("node") is not None and (REPO / "node_modules/@openzeppelin").exists()


def test_honest_receipt_verifies_everywhere(honest: Honest, tmp_path: Path):
    receipt = honest.batch.receipt(742)
    check = ogkit_receipt_check(receipt, honest.allowlist)
    assert not isinstance(check, Exception) and check.ok, check
    if NODE:
        assert js_accepts_good(receipt, tmp_path)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cls", CASES)
def test_tampered_receipt_fails_in_ogkit(honest: Honest, cls):
    check = ogkit_receipt_check(cls.fn(honest), honest.allowlist)  # never another exception
    assert isinstance(check, ReceiptError) or check.ok is False, f"{cls.name}: {cls.doc}"


@pytest.mark.timeout(60)
@pytest.mark.skipif(not NODE, reason="node or node_modules missing: run `npm ci`")
@pytest.mark.parametrize("cls", [c for c in CASES if c.values[0].js_rejects])
def test_tampered_receipt_fails_in_openzeppelin(honest: Honest, cls, tmp_path: Path):
    assert js_verdict(cls.fn(honest), tmp_path) in {"rejected", "threw"}, cls.doc

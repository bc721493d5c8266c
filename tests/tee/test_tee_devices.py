"""The hardware attesters' device side, as far as a machine outside an enclave allows.

* NSM (``/dev/nsm``): the ioctl number, the message layout, the CBOR request and response
  are checked; the ioctl itself cannot run here (no Nitro enclave), and the attester
  says so with ``EnclaveUnavailable``.
* configfs-tsm: the report entry's life (mkdir, provider, inblob, generation, outblob,
  rmdir) runs against a temporary directory standing in for the kernel, which would
  create the attribute files itself; the quote it returns is the real TDX sample.
"""

from __future__ import annotations

import base64
import ctypes
from pathlib import Path

import cbor2
import pytest
from eth_account import Account
from tee_vectors import TDX_V4

from ogkit.attest import ATTESTERS, NitroEnclaveAttester, TdxAttester, make_attester
from ogkit.errors import ConfigError
from ogkit.keys import Signer
from ogkit.tee.claims import EnclaveUnavailable, EvidenceError, address_of, report_data_for
from ogkit.tee.nsm import (
    NSM_IOCTL_REQUEST,
    NsmMessage,
    attestation_document,
    decode_response,
    encode_attestation_request,
)
from ogkit.tee.tsm import TsmReport

SIGNER = Signer("enclave", Account.from_key("0x" + "e5" * 32))
RUNTIME_ID = "0x" + "12" * 32


def test_nsm_ioctl_is_iowr_0x0a_0_of_two_iovecs():
    assert ctypes.sizeof(NsmMessage) == 32  # two struct iovec on a 64-bit kernel
    assert NSM_IOCTL_REQUEST == 0xC0200A00


def test_nsm_request_and_response_encoding():
    request = cbor2.loads(encode_attestation_request(user_data=b"\x01" * 32))
    assert request == {
        "Attestation": {"user_data": b"\x01" * 32, "nonce": None, "public_key": None}
    }
    assert decode_response(cbor2.dumps({"Attestation": {"document": b"doc"}})) == b"doc"
    with pytest.raises(EvidenceError, match="InvalidArgument"):
        decode_response(cbor2.dumps({"Error": "InvalidArgument"}))
    with pytest.raises(EvidenceError):
        decode_response(b"\xff")
    with pytest.raises(EvidenceError):
        encode_attestation_request(user_data=b"x" * 513)


def test_nsm_outside_an_enclave_is_unavailable(tmp_path: Path):
    with pytest.raises(EnclaveUnavailable, match="inside an AWS Nitro enclave"):
        attestation_document(b"\x00" * 32, device=str(tmp_path / "nsm"))
    attester = make_attester("nitro", signer=SIGNER, device=str(tmp_path / "nsm"))
    assert isinstance(attester, NitroEnclaveAttester) and attester.address == SIGNER.address
    with pytest.raises(EnclaveUnavailable):
        attester.evidence(RUNTIME_ID)


class FakeTsm(TsmReport):
    """A temp directory standing in for configfs: making an entry creates its attribute
    files the way the kernel does; ``outblob`` holds a fixed quote."""

    def __init__(self, root: Path, quote: bytes, provider: str = "tdx_guest"):
        super().__init__(root)
        self.fixed_quote = quote
        self.fake_provider = provider
        self.entries: list[Path] = []
        self.removed: list[Path] = []

    def _make_entry(self, path: Path) -> None:
        super()._make_entry(path)
        (path / "provider").write_text(self.fake_provider + "\n")
        (path / "generation").write_text("1\n")
        (path / "outblob").write_bytes(self.fixed_quote)
        self.entries.append(path)

    def _remove_entry(self, path: Path) -> None:
        for child in path.iterdir():
            child.unlink()
        super()._remove_entry(path)
        self.removed.append(path)


def test_tsm_report_writes_inblob_reads_outblob_and_cleans_up(tmp_path: Path):
    tsm = FakeTsm(tmp_path, TDX_V4.quote)
    report_data = bytes(range(64))
    written: list[bytes] = []
    original = Path.write_bytes

    def spy(p: Path, data: bytes):
        if p.name == "inblob":
            written.append(bytes(data))
        return original(p, data)

    mp = pytest.MonkeyPatch()
    mp.setattr(Path, "write_bytes", spy)
    try:
        assert tsm.quote(report_data) == TDX_V4.quote
    finally:
        mp.undo()
    assert written == [report_data]
    assert tsm.removed == tsm.entries and not any(tmp_path.iterdir())
    assert tsm.entries[0].name.startswith("ogkit-")


def test_tsm_refuses_other_providers_races_and_bad_input(tmp_path: Path):
    with pytest.raises(EnclaveUnavailable, match="sev_guest"):
        FakeTsm(tmp_path, TDX_V4.quote, provider="sev_guest").quote(bytes(64))
    with pytest.raises(EvidenceError):
        FakeTsm(tmp_path, TDX_V4.quote).quote(bytes(32))
    with pytest.raises(EnclaveUnavailable, match="configfs-tsm"):
        TsmReport(tmp_path / "absent").quote(bytes(64))
    with pytest.raises(EvidenceError, match="empty quote"):
        FakeTsm(tmp_path, b"").quote(bytes(64))
    assert not any(tmp_path.iterdir())


def test_tsm_generation_change_is_a_race(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    tsm = FakeTsm(tmp_path, TDX_V4.quote)
    original = Path.read_bytes

    def racing(p: Path):
        data = original(p)
        if p.name == "outblob":
            (p.parent / "generation").write_text("2\n")
        return data

    monkeypatch.setattr(Path, "read_bytes", racing)
    with pytest.raises(EvidenceError, match="generation 1 -> 2"):
        tsm.quote(bytes(64))


@pytest.mark.usefixtures("dcap_qvl")
def test_tdx_attester_refuses_a_quote_that_does_not_bind_its_key(tmp_path: Path):
    """The stand-in returns the real sample quote, whose report data is not this key's
    binding: the attester refuses to hand it on as evidence."""
    attester = TdxAttester(
        SIGNER, tsm=FakeTsm(tmp_path, TDX_V4.quote), collateral=lambda q: TDX_V4.collateral
    )
    with pytest.raises(ConfigError, match="other report data"):
        attester.evidence(RUNTIME_ID)


def test_tdx_attester_evidence_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """With the quote's parse standing in (no TDX here), the evidence object carries the
    quote, the collateral, the key and the runtime id as docs/tee.md describes."""
    from ogkit.tee import dcap

    class Fields:
        tee = "tdx"
        measurement = "0x" + "77" * 32

    attester = TdxAttester(
        SIGNER, tsm=FakeTsm(tmp_path, TDX_V4.quote), collateral=lambda q: TDX_V4.collateral
    )
    fields = Fields()
    fields.report_data = report_data_for(attester.public_key, bytes.fromhex(RUNTIME_ID[2:]))
    monkeypatch.setattr(dcap, "parse_quote", lambda quote: fields)
    evidence = attester.evidence(RUNTIME_ID)
    assert evidence["kind"] == "tdx" and evidence["hardware_backed"] is True
    assert base64.b64decode(evidence["quote"]) == TDX_V4.quote
    assert evidence["collateral"] == TDX_V4.collateral
    assert evidence["runtime_id"] == RUNTIME_ID and evidence["measurement"] == fields.measurement
    assert address_of(bytes.fromhex(evidence["public_key"][2:])) == SIGNER.address
    assert set(ATTESTERS) == {"software", "nitro", "tdx"}

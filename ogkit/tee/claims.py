"""What every TEE evidence verifier returns, and the two hashes ogkit defines over it.

* :class:`TeeClaims` — the same claims for an Intel TDX or SGX quote and an AWS Nitro
  attestation document: the TEE, its measurement registers, the bytes the enclave
  committed to (report data / user data, public key, nonce), the signer chain up to
  the pinned root, when it was checked, the collateral's validity window and the TCB
  status.
* :func:`measurement_hash` — keccak256 over a canonical encoding of the measurement
  registers; the value the NodeRegistry approves with its kind (docs/tee.md §2).
* :func:`binding_digest` / :func:`report_data_for` — what an ogkit enclave writes into
  its report data: keccak256(attester public key ‖ nonce) (docs/tee.md §3).

Nothing here imports a TEE library; the verifiers in :mod:`ogkit.tee.dcap` and
:mod:`ogkit.tee.nitro` do, on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ogkit.crypto.keccak import keccak256
from ogkit.errors import ArtifactError, ConfigError

__all__ = [
    "HARDWARE_KINDS",
    "KIND_NITRO",
    "KIND_SGX",
    "KIND_SOFTWARE",
    "KIND_TDX",
    "MEASUREMENT_KINDS",
    "MEASUREMENT_TAG",
    "REGISTERS",
    "EnclaveUnavailable",
    "EvidenceError",
    "TeeClaims",
    "address_of",
    "binding_digest",
    "measurement_hash",
    "report_data_for",
]

# The NodeRegistry's measurement kinds (NodeRegistry.sol KIND_*; 0 means "not approved").
KIND_SOFTWARE = 1
KIND_TDX = 2
KIND_SGX = 3
KIND_NITRO = 4
MEASUREMENT_KINDS = {
    "software": KIND_SOFTWARE,
    "tdx": KIND_TDX,
    "sgx": KIND_SGX,
    "nitro": KIND_NITRO,
}
HARDWARE_KINDS = ("tdx", "sgx", "nitro")

#: The registers each TEE's measurement hash covers, in hash order, and their width.
REGISTERS: dict[str, tuple[tuple[str, ...], int]] = {
    "tdx": (("mr_td", "rt_mr0", "rt_mr1", "rt_mr2", "rt_mr3"), 48),
    "sgx": (("mr_enclave", "mr_signer"), 32),
    "nitro": (("pcr0", "pcr1", "pcr2"), 48),
}
MEASUREMENT_TAG = b"ogkit.tee.measurement.v1"


class EvidenceError(ArtifactError):
    """Hardware evidence that does not verify; ``reason`` is the verifier's finding
    (``tee-evidence-malformed``, ``tee-evidence-invalid``, ``tee-collateral-expired``,
    ``tee-verifier-unavailable``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class EnclaveUnavailable(ConfigError):
    """A hardware attester was chosen where its device is missing (not in an enclave)."""


def measurement_hash(tee: str, registers: Mapping[str, bytes]) -> str:
    """``keccak256(utf8("ogkit.tee.measurement.v1") ‖ uint8(kind) ‖ r_1 ‖ … ‖ r_n)`` with
    the registers of :data:`REGISTERS` in order, each at its fixed width (TDX: MRTD,
    RTMR0–3, 48 bytes each; SGX: MRENCLAVE, MRSIGNER, 32 bytes; Nitro: PCR0–2, 48 bytes).
    In Solidity: ``keccak256(abi.encodePacked("ogkit.tee.measurement.v1", uint8(kind),
    r_1, …, r_n))``."""
    try:
        names, width = REGISTERS[tee]
    except KeyError:
        raise ConfigError(f"no measurement registers for TEE {tee!r}") from None
    parts = [MEASUREMENT_TAG, bytes([MEASUREMENT_KINDS[tee]])]
    for name in names:
        value = bytes(registers[name])
        if len(value) != width:
            raise ConfigError(f"{tee} register {name} is {len(value)} bytes, not {width}")
        parts.append(value)
    return "0x" + keccak256(b"".join(parts)).hex()


def _public_key_bytes(public_key: bytes) -> bytes:
    key = bytes(public_key)
    if len(key) == 65 and key[0] == 4:
        key = key[1:]
    if len(key) != 64:
        raise ConfigError("a secp256k1 public key is 64 bytes (x ‖ y), or 65 with a 0x04 prefix")
    return key


def address_of(public_key: bytes) -> str:
    """The Ethereum address of an uncompressed secp256k1 public key (x ‖ y)."""
    from eth_utils import to_checksum_address

    return to_checksum_address(keccak256(_public_key_bytes(public_key))[12:])


def binding_digest(public_key: bytes, nonce: bytes) -> bytes:
    """``keccak256(public_key ‖ nonce)``: the attester's 64-byte secp256k1 public key and
    the 32-byte nonce (the batch's runtime id) the enclave vouches for."""
    nonce = bytes(nonce)
    if len(nonce) != 32:
        raise ConfigError(f"the binding nonce is 32 bytes, got {len(nonce)}")
    return keccak256(_public_key_bytes(public_key) + nonce)


def report_data_for(public_key: bytes, nonce: bytes) -> bytes:
    """The 64 bytes an ogkit enclave puts in a TDX/SGX report data: the
    :func:`binding_digest`, then 32 zero bytes (a Nitro enclave puts the digest alone in
    ``user_data``)."""
    return binding_digest(public_key, nonce) + bytes(32)


@dataclass(frozen=True)
class TeeClaims:
    """What a verified quote or document says, the same for every TEE."""

    tee: str  # "tdx" | "sgx" | "nitro"
    registers: dict[str, str]  # the measured registers, name -> 0x hex, in hash order
    measurement: str  # measurement_hash(tee, registers)
    report_data: bytes  # TDX/SGX report data (64 bytes); Nitro user_data (b"" if none)
    public_key: bytes | None  # Nitro's public_key field (TDX/SGX have none)
    nonce: bytes | None  # Nitro's nonce field
    debug: bool  # a debug enclave: its memory is open to the host
    tcb_status: str  # Intel's TCB status ("UpToDate", "OutOfDate", …); "n/a" for Nitro
    advisory_ids: tuple[str, ...]
    signer_chain: tuple[str, ...]  # certificate subjects, the signing key's first, root last
    root_sha256: str  # SHA-256 of the root certificate the chain ends in (pinned)
    verified_at: int  # unix seconds the signatures, certificates and collateral held at
    valid_from: int  # the collateral's (or certificates') validity window, unix seconds
    valid_until: int
    generated_at: int | None  # when the evidence was made, if it says (Nitro)
    seconds: float = 0.0  # how long the verification took
    # The oldest issue date of the signed collateral (TCB info, QE identity, CRLs: Intel);
    # a TCB revoked after it is still UpToDate in it. None: no such collateral (Nitro).
    collateral_issued_at: int | None = None

    @property
    def kind(self) -> int:
        """The NodeRegistry measurement kind (2 TDX, 3 SGX, 4 Nitro)."""
        return MEASUREMENT_KINDS[self.tee]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (no floats but ``seconds``), for verdicts and reports."""
        return {
            "tee": self.tee,
            "kind": self.kind,
            "registers": dict(self.registers),
            "measurement": self.measurement,
            "report_data": "0x" + self.report_data.hex(),
            "public_key": None if self.public_key is None else "0x" + self.public_key.hex(),
            "nonce": None if self.nonce is None else "0x" + self.nonce.hex(),
            "debug": self.debug,
            "tcb_status": self.tcb_status,
            "advisory_ids": list(self.advisory_ids),
            "signer_chain": list(self.signer_chain),
            "root_sha256": self.root_sha256,
            "verified_at": self.verified_at,
            "valid_from": self.valid_from,
            "valid_until": self.valid_until,
            "generated_at": self.generated_at,
            "collateral_issued_at": self.collateral_issued_at,
            "seconds": self.seconds,
        }

"""The attest step: per-row hashes and leaves, per-partition roots, a signed batch claim.

What is signed lives here once: the EIP-712 :class:`BatchClaim` (the typed data that
``InferenceSettlement`` checks on-chain), its :class:`ClaimDomain`, and the derivation
of a batch id. The chain code imports them from here::

    EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)
    BatchClaim(bytes32 batchId,bytes32 modelId,bytes32 runtimeId,bytes32 batchRoot,
               uint64 rowCount,address requester,uint64 timestamp,address attester)

with ``name = "ogkit"``, ``version = "1"``.

Attesters are chosen by name from :data:`ATTESTERS` and share one interface. The
software enclave is a development enclave: a secp256k1 key whose measurement is the
runtime id. It claims no hardware backing, and says so in its evidence. The hardware
attesters run inside an enclave and make the enclave vouch for the same key: their
evidence is an AWS Nitro attestation document (``nitro``, from ``/dev/nsm``) or an
Intel TDX quote with its collateral (``tdx``, from configfs-tsm) whose report data is
``keccak256(public key ‖ runtime id)`` (docs/tee.md; :mod:`ogkit.tee` verifies it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
from eth_abi import encode as abi_encode
from eth_utils import to_checksum_address

from ogkit.crypto.encoding import tensor_row_hashes
from ogkit.crypto.keccak import keccak256
from ogkit.crypto.merkle import MerkleTree, leaf_hashes
from ogkit.errors import ArtifactError, ConfigError
from ogkit.keys import Signer, recover_typed_data

__all__ = [
    "ATTESTERS",
    "CLAIM_TYPES",
    "EIP712_DOMAIN_TYPE",
    "Attester",
    "BatchClaim",
    "ClaimDomain",
    "NitroEnclaveAttester",
    "PartitionAttestation",
    "SoftwareEnclaveAttester",
    "TdxAttester",
    "attest_partition",
    "derive_batch_id",
    "execution_hash",
    "is_address",
    "is_hex32",
    "make_attester",
]


# -- what is signed --------------------
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
DEVNET_CHAIN_ID = 31337

EIP712_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
"""The EIP712Domain fields every ogkit typed-data message uses (name, version, chain id,
verifying contract)."""

CLAIM_TYPES = {
    "EIP712Domain": EIP712_DOMAIN_TYPE,
    "BatchClaim": [
        {"name": "batchId", "type": "bytes32"},
        {"name": "modelId", "type": "bytes32"},
        {"name": "runtimeId", "type": "bytes32"},
        {"name": "batchRoot", "type": "bytes32"},
        {"name": "rowCount", "type": "uint64"},
        {"name": "requester", "type": "address"},
        {"name": "timestamp", "type": "uint64"},
        {"name": "attester", "type": "address"},
    ],
}


def _b32(value: str, what: str) -> bytes:
    raw = bytes.fromhex(value.removeprefix("0x"))
    if len(raw) != 32:
        raise ConfigError(f"{what} must be 32 bytes (0x + 64 hex digits), got {value!r}")
    return raw


@dataclass(frozen=True)
class ClaimDomain:
    """Which chain and settlement contract a claim is for (EIP-712 domain)."""

    chain_id: int = DEVNET_CHAIN_ID
    verifying_contract: str = ZERO_ADDRESS  # the InferenceSettlement address once deployed

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": "ogkit",
            "version": "1",
            "chainId": self.chain_id,
            "verifyingContract": to_checksum_address(self.verifying_contract),
        }


def execution_hash(execution: Mapping[str, Any]) -> str:
    """``keccak256`` of the canonical JSON of how the node ran the batch (spec §5):
    partition size, mini-batch size, comparison policy, input bindings and outputs."""
    from ogkit.hub.manifest import canonical_json

    return "0x" + keccak256(canonical_json(dict(execution))).hex()


def derive_batch_id(
    *,
    model_id: str,
    dataset_id: str,
    requester: str,
    chain_id: int,
    verifying_contract: str,
    job: str,
    execution: str,
) -> str:
    """``keccak256(abi.encode(bytes32 modelId, bytes32 datasetId, address requester,
    uint256 chainId, address verifyingContract, bytes32 keccak256(job),
    bytes32 executionHash))``.

    ``dataset_id`` is the dataset commitment (the input root), ``chain_id`` and
    ``verifying_contract`` the claim domain (so a batch signed for one settlement contract
    is never resumed or returned for another) and ``execution`` the :func:`execution_hash`.
    Deterministic, so a re-run of the same job resumes and gives the same root; bound into
    every leaf and the signed claim, so neither the inputs, the geometry the rows ran in,
    nor the comparison policy can change under a signature.
    """
    encoded = abi_encode(
        ["bytes32", "bytes32", "address", "uint256", "address", "bytes32", "bytes32"],
        [
            _b32(model_id, "model id"),
            _b32(dataset_id, "dataset id"),
            to_checksum_address(requester),
            chain_id,
            to_checksum_address(verifying_contract),
            keccak256(job.encode()),
            _b32(execution, "execution hash"),
        ],
    )
    return "0x" + keccak256(encoded).hex()


@dataclass(frozen=True)
class BatchClaim:
    batch_id: str
    model_id: str
    runtime_id: str
    batch_root: str
    row_count: int
    requester: str
    timestamp: int
    attester: str

    def typed_data(self, domain: ClaimDomain) -> dict[str, Any]:
        return {
            "types": CLAIM_TYPES,
            "primaryType": "BatchClaim",
            "domain": domain.to_dict(),
            "message": {
                "batchId": _b32(self.batch_id, "batch id"),
                "modelId": _b32(self.model_id, "model id"),
                "runtimeId": _b32(self.runtime_id, "runtime id"),
                "batchRoot": _b32(self.batch_root, "batch root"),
                "rowCount": self.row_count,
                "requester": to_checksum_address(self.requester),
                "timestamp": self.timestamp,
                "attester": to_checksum_address(self.attester),
            },
        }

    def recover_signer(self, domain: ClaimDomain, signature: str) -> str:
        return recover_typed_data(self.typed_data(domain), signature)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> BatchClaim:
        """Parse a claim, refusing anything that is not exactly a claim's types and ranges
        (:class:`~ogkit.errors.ArtifactError` names the field)."""
        if not isinstance(d, Mapping):
            raise ArtifactError(f"claim must be an object, got {type(d).__name__}")
        missing = [k for k in cls.__dataclass_fields__ if k not in d]
        if missing:
            raise ArtifactError(f"claim lacks {', '.join(missing)}")
        for key in ("batch_id", "model_id", "runtime_id", "batch_root"):
            if not is_hex32(d[key]):
                raise ArtifactError(f"claim {key} must be 0x + 64 hex digits, got {d[key]!r:.80}")
        for key in ("requester", "attester"):
            if not is_address(d[key]):
                raise ArtifactError(f"claim {key} must be a 20-byte address, got {d[key]!r:.80}")
        for key in ("row_count", "timestamp"):
            value = d[key]
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
                raise ArtifactError(f"claim {key} must be a uint64, got {value!r:.80}")
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def is_hex32(value: Any) -> bool:
    """``0x`` + exactly 64 hex digits."""
    return isinstance(value, str) and _HEX32.fullmatch(value) is not None


def is_address(value: Any) -> bool:
    """``0x`` + exactly 40 hex digits (any case)."""
    return isinstance(value, str) and _ADDRESS.fullmatch(value) is not None


_HEX32 = re.compile(r"0x[0-9a-fA-F]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


# -- attesters --------------------------------------------------------------------------------
class Attester(Protocol):
    kind: str

    @property
    def address(self) -> str: ...

    def evidence(self, runtime_id: str) -> dict[str, Any]:
        """What backs the signature: the measurement and, for hardware, the quote."""
        ...

    def sign_claim(self, claim: BatchClaim, domain: ClaimDomain) -> str: ...


class SoftwareEnclaveAttester:
    """A development enclave: a key, with the runtime id as its measurement. Not hardware."""

    kind = "software-enclave"

    def __init__(self, signer: Signer) -> None:
        self._signer = signer

    @property
    def address(self) -> str:
        return self._signer.address

    def evidence(self, runtime_id: str) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "hardware_backed": False,
            "measurement": runtime_id,
            "note": "development enclave: the measurement is the runtime fingerprint hash; "
            "no hardware attests to it",
        }

    def sign_claim(self, claim: BatchClaim, domain: ClaimDomain) -> str:
        if claim.attester.lower() != self.address.lower():
            raise ConfigError(f"claim names attester {claim.attester}, not {self.address}")
        return self._signer.sign_typed_data(claim.typed_data(domain))

    def __repr__(self) -> str:
        return f"SoftwareEnclaveAttester({self.address})"


class _HardwareAttester:
    """A key inside an enclave whose evidence binds it: the enclave's report data is
    ``keccak256(public key ‖ runtime id)``. The key must be made inside the enclave and
    never leave it; the evidence proves the binding, not how the key was kept."""

    kind = ""

    def __init__(self, signer: Signer) -> None:
        self._signer = signer

    @property
    def address(self) -> str:
        return self._signer.address

    @property
    def public_key(self) -> bytes:
        """The attester's secp256k1 public key, 64 bytes (x ‖ y)."""
        from eth_keys import keys

        return keys.PrivateKey(bytes(self._signer.local_account.key)).public_key.to_bytes()

    def sign_claim(self, claim: BatchClaim, domain: ClaimDomain) -> str:
        if claim.attester.lower() != self.address.lower():
            raise ConfigError(f"claim names attester {claim.attester}, not {self.address}")
        return self._signer.sign_typed_data(claim.typed_data(domain))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address})"


class NitroEnclaveAttester(_HardwareAttester):
    """Inside an AWS Nitro enclave: evidence is an NSM attestation document whose
    ``user_data`` is ``keccak256(public key ‖ runtime id)``."""

    kind = "nitro"

    def __init__(self, signer: Signer, *, device: str | None = None) -> None:
        super().__init__(signer)
        from ogkit.tee.nsm import NSM_DEVICE

        self.device = device or NSM_DEVICE

    def evidence(self, runtime_id: str) -> dict[str, Any]:
        from ogkit.tee.claims import binding_digest, measurement_hash
        from ogkit.tee.evidence import hardware_evidence
        from ogkit.tee.nitro import parse_document
        from ogkit.tee.nsm import attestation_document

        digest = binding_digest(self.public_key, _b32(runtime_id, "runtime id"))
        document = attestation_document(user_data=digest, device=self.device)
        parsed = parse_document(document)
        if parsed.user_data != digest:
            raise ConfigError("the NSM returned a document over other user data")
        return hardware_evidence(
            self.kind,
            runtime_id=runtime_id,
            public_key=self.public_key,
            generated_at=int(time.time()),
            document=document,
            measurement=measurement_hash("nitro", {f"pcr{i}": parsed.pcrs[i] for i in (0, 1, 2)}),
        )


def _fetch_collateral(pccs_url: str) -> Callable[[bytes], Mapping[str, Any]]:
    def fetch(quote: bytes) -> Mapping[str, Any]:
        import asyncio
        import json

        import dcap_qvl

        collateral = asyncio.run(dcap_qvl.get_collateral(pccs_url, quote))
        return json.loads(collateral.to_json())

    return fetch


class TdxAttester(_HardwareAttester):
    """Inside an Intel TDX trust domain: evidence is a TDX quote (from configfs-tsm)
    whose report data is ``keccak256(public key ‖ runtime id) ‖ 0^32``, with the DCAP
    collateral that verifies it as of now. ``collateral`` maps a quote to that
    collateral (dcap-qvl's ``QuoteCollateralV3`` JSON); by default it is fetched from
    ``pccs_url`` with dcap-qvl."""

    kind = "tdx"

    def __init__(
        self,
        signer: Signer,
        *,
        tsm_root: str | None = None,
        tsm: Any = None,
        collateral: Callable[[bytes], Mapping[str, Any]] | None = None,
        pccs_url: str = "https://api.trustedservices.intel.com",
    ) -> None:
        super().__init__(signer)
        from ogkit.tee.tsm import TSM_REPORT_ROOT, TsmReport

        # ``tsm``: anything with ``quote(report_data) -> bytes`` (a TsmReport by default).
        self.tsm = tsm if tsm is not None else TsmReport(tsm_root or TSM_REPORT_ROOT)
        self._collateral = collateral or _fetch_collateral(pccs_url)

    def evidence(self, runtime_id: str) -> dict[str, Any]:
        from ogkit.tee.claims import report_data_for
        from ogkit.tee.dcap import parse_quote
        from ogkit.tee.evidence import hardware_evidence

        report_data = report_data_for(self.public_key, _b32(runtime_id, "runtime id"))
        quote = self.tsm.quote(report_data)
        fields = parse_quote(quote)
        if fields.report_data != report_data or fields.tee != "tdx":
            raise ConfigError("the TSM returned a quote over other report data")
        return hardware_evidence(
            self.kind,
            runtime_id=runtime_id,
            public_key=self.public_key,
            generated_at=int(time.time()),
            quote=quote,
            collateral=self._collateral(quote),
            measurement=fields.measurement,
        )


ATTESTERS: dict[str, type] = {
    "software": SoftwareEnclaveAttester,
    "nitro": NitroEnclaveAttester,
    "tdx": TdxAttester,
}


def make_attester(kind: str, **kwargs: Any) -> Attester:
    """Build a registered attester by name (``software``, ``nitro``, ``tdx``)."""
    try:
        return ATTESTERS[kind](**kwargs)
    except KeyError:
        raise ConfigError(
            f"unknown attester {kind!r}; registered: {', '.join(sorted(ATTESTERS))}"
        ) from None


# -- per-partition attestation ---------------------------------------------------------------
@dataclass
class PartitionAttestation:
    row_index: np.ndarray  # uint64 (n,)
    input_hashes: np.ndarray  # uint8 (n, 32)
    output_hashes: np.ndarray
    leaves: np.ndarray
    root: bytes


def attest_partition(
    *,
    offset: int,
    feeds: Mapping[str, np.ndarray],
    outputs: Mapping[str, np.ndarray],
    input_hashes: np.ndarray | None = None,
    output_hashes: np.ndarray | None = None,
) -> PartitionAttestation:
    """Hash every row's inputs and outputs, build its leaf, and the partition's tree.

    A leaf holds the row's index and hashes only (spec 3.1): the batch, model and runtime
    ids are bound once by the signed claim, so a partition's tree needs no batch id.

    ``input_hashes`` are the rows' input hashes when already computed (the dataset
    commitment hashed every row before the run), ``output_hashes`` likewise (hashed on
    the worker while the input root was still being built); a verifier recomputes both
    anyway."""
    n = len(input_hashes) if input_hashes is not None else len(next(iter(feeds.values())))
    row_index = np.arange(offset, offset + n, dtype=np.uint64)
    if input_hashes is None:
        input_hashes = tensor_row_hashes(feeds)
    if output_hashes is None:
        output_hashes = tensor_row_hashes(outputs)
    leaves = leaf_hashes(row_index, input_hashes, output_hashes)
    root = MerkleTree.from_leaf_hashes(leaves).root
    return PartitionAttestation(row_index, input_hashes, output_hashes, leaves, root)

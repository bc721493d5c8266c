"""AWS Nitro Enclaves attestation documents, verified here with ``cbor2`` and
``cryptography`` against the AWS Nitro Enclaves root, pinned by fingerprint.

An attestation document is a COSE_Sign1 structure (RFC 9052 §4.2, CBOR tag 18 or
untagged) whose payload is the CBOR attestation document of AWS's "Nitro Enclaves
attestation process" (module_id, digest, timestamp, pcrs, certificate, cabundle,
public_key, user_data, nonce), signed with ES384 by the key of ``certificate``, which
chains through ``cabundle`` (root first) to the AWS Nitro Enclaves root. What is
checked, in order (each failure raises :class:`~ogkit.tee.claims.EvidenceError`):

1. the structure: a 4-array of (protected bstr, unprotected map, payload bstr,
   signature bstr), the protected header exactly ``{1: -35}`` (ES384), the payload's
   fields of the types and sizes AWS specifies (``tee-evidence-malformed``);
2. the root: ``cabundle[0]`` is the pinned root, by SHA-256 of its DER
   (``tee-evidence-invalid``);
3. the chain root → intermediates → ``certificate``: each signed by the one before
   with ecdsa-with-SHA384, issuers are CAs (basic constraints, path length, keyCertSign),
   the leaf may sign (digitalSignature) (``tee-evidence-invalid``);
4. every certificate valid at the verification time (``tee-collateral-expired``: the
   leaf lives about three hours, so a document is verified as of when it was used);
5. the COSE signature over ``Sig_structure = ["Signature1", protected, h'', payload]``
   with the leaf's P-384 key (``tee-evidence-invalid``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ogkit.tee.claims import EvidenceError, TeeClaims, measurement_hash
from ogkit.tee.policy import EvidencePolicy

__all__ = ["NitroDocument", "parse_document", "verify_document"]

COSE_SIGN1_TAG = 18
ES384 = -35
MAX_DOCUMENT_BYTES = 64 * 1024
_OPTIONAL = {"public_key": (1, 1024), "user_data": (0, 512), "nonce": (0, 512)}


def _bad(message: str) -> EvidenceError:
    return EvidenceError("tee-evidence-malformed", f"Nitro document: {message}")


@dataclass(frozen=True)
class NitroDocument:
    """A parsed (not yet verified) COSE_Sign1 attestation document."""

    protected: bytes
    payload: bytes
    signature: bytes
    module_id: str
    timestamp_ms: int
    pcrs: dict[int, bytes]
    certificate: bytes
    cabundle: tuple[bytes, ...]
    public_key: bytes | None
    user_data: bytes | None
    nonce: bytes | None

    def sig_structure(self) -> bytes:
        """The bytes ES384 signs (RFC 9052 §4.4), with no external AAD."""
        import cbor2

        return cbor2.dumps(["Signature1", self.protected, b"", self.payload])


def _bytes_field(doc: Mapping[Any, Any], key: str, lo: int, hi: int) -> bytes:
    value = doc.get(key)
    if not isinstance(value, bytes) or not lo <= len(value) <= hi:
        raise _bad(f"{key} must be {lo}..{hi} bytes")
    return value


def parse_document(data: bytes) -> NitroDocument:
    """Decode a COSE_Sign1 attestation document and check its syntax (AWS's
    "syntactical validation"). Signatures and certificates are not checked here."""
    import cbor2

    data = bytes(data)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise _bad(f"{len(data):,} bytes, more than a document holds")
    try:
        outer = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types on hostile input
        raise _bad(f"not CBOR: {exc}") from None
    if isinstance(outer, cbor2.CBORTag):
        if outer.tag != COSE_SIGN1_TAG:
            raise _bad(f"CBOR tag {outer.tag}, not COSE_Sign1 (18)")
        outer = outer.value
    if not (isinstance(outer, (list, tuple)) and len(outer) == 4):
        raise _bad("not a COSE_Sign1 array of four")
    protected, unprotected, payload, signature = outer
    if not all(isinstance(x, bytes) for x in (protected, payload, signature)):
        raise _bad("protected header, payload and signature must be byte strings")
    if not isinstance(unprotected, Mapping):
        raise _bad("the unprotected header must be a map")
    try:
        header = cbor2.loads(protected)
    except Exception:
        raise _bad("the protected header is not CBOR") from None
    if header != {1: ES384}:
        raise _bad(f"protected header {header!r:.60}; only ES384 ({{1: -35}}) is accepted")
    if len(signature) != 96:
        raise _bad(f"an ES384 signature is 96 bytes (r ‖ s), got {len(signature)}")
    try:
        doc = cbor2.loads(payload)
    except Exception:
        raise _bad("the payload is not CBOR") from None
    if not isinstance(doc, dict):
        raise _bad("the payload is not a map")
    allowed = {"module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle", *_OPTIONAL}
    extra = set(doc) - allowed
    if extra:
        raise _bad(f"unknown fields {sorted(map(str, extra))[:5]}")
    module_id = doc.get("module_id")
    if not isinstance(module_id, str) or not module_id:
        raise _bad("module_id must be non-empty text")
    if doc.get("digest") != "SHA384":
        raise _bad(f"digest {doc.get('digest')!r:.20}, not SHA384")
    ts = doc.get("timestamp")
    if not isinstance(ts, int) or isinstance(ts, bool) or not 0 < ts < 2**64:
        raise _bad("timestamp must be a positive integer (ms)")
    pcrs = doc.get("pcrs")
    if not isinstance(pcrs, dict) or not 1 <= len(pcrs) <= 32:
        raise _bad("pcrs must map 1..32 indices")
    for index, value in pcrs.items():
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 32:
            raise _bad(f"PCR index {index!r:.20} is not in 0..31")
        if not isinstance(value, bytes) or len(value) != 48:
            raise _bad(f"PCR{index} must be 48 bytes (SHA-384)")
    for i in (0, 1, 2):
        if i not in pcrs:
            raise _bad(f"PCR{i} is missing")
    certificate = _bytes_field(doc, "certificate", 1, 1024)
    cabundle = doc.get("cabundle")
    if not isinstance(cabundle, (list, tuple)) or not cabundle:
        raise _bad("cabundle must be a non-empty list")
    for i, cert in enumerate(cabundle):
        if not isinstance(cert, bytes) or not 1 <= len(cert) <= 1024:
            raise _bad(f"cabundle[{i}] must be 1..1024 bytes")
    optional: dict[str, bytes | None] = {}
    for key, (lo, hi) in _OPTIONAL.items():
        # The NSM writes an absent optional field as null.
        optional[key] = None if doc.get(key) is None else _bytes_field(doc, key, lo, hi)
    return NitroDocument(
        protected=protected,
        payload=payload,
        signature=signature,
        module_id=module_id,
        timestamp_ms=ts,
        pcrs=dict(pcrs),
        certificate=certificate,
        cabundle=tuple(cabundle),
        **optional,
    )


def _check_chain(
    doc: NitroDocument, at: int, policy: EvidencePolicy
) -> tuple[Any, list[str], int, int]:
    """The chain root → … → leaf: pinned root, signatures, CA rules, validity at ``at``.
    Returns the leaf, the subjects (leaf first) and the chain's validity window."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.x509.oid import SignatureAlgorithmOID

    root_sha = hashlib.sha256(doc.cabundle[0]).hexdigest()
    if root_sha != policy.nitro_root_sha256:
        raise EvidenceError(
            "tee-evidence-invalid",
            f"Nitro document: cabundle[0] has SHA-256 {root_sha}, not the pinned AWS Nitro root",
        )
    try:
        certs = [x509.load_der_x509_certificate(c) for c in (*doc.cabundle, doc.certificate)]
    except Exception as exc:  # ValueError, or x509.InvalidVersion
        raise _bad(f"a certificate does not parse: {exc}") from None
    n = len(certs)
    for i, cert in enumerate(certs):
        name = cert.subject.rfc4514_string()
        if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA384:
            raise EvidenceError(
                "tee-evidence-invalid", f"Nitro document: {name} is not signed with ES384"
            )
        try:
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound as exc:
            raise EvidenceError("tee-evidence-invalid", f"Nitro document: {name}: {exc}") from None
        if i < n - 1:  # an issuer
            below = n - 2 - i  # CA certificates that follow it before the leaf
            if not bc.ca or not ku.key_cert_sign:
                raise EvidenceError(
                    "tee-evidence-invalid", f"Nitro document: {name} may not issue certificates"
                )
            if bc.path_length is not None and below > bc.path_length:
                raise EvidenceError(
                    "tee-evidence-invalid", f"Nitro document: the chain is too long for {name}"
                )
        elif bc.ca or not ku.digital_signature:
            raise EvidenceError(
                "tee-evidence-invalid",
                f"Nitro document: the signing certificate {name} is not an end-entity signer",
            )
        if i > 0:
            try:
                cert.verify_directly_issued_by(certs[i - 1])
            except (ValueError, TypeError, InvalidSignature) as exc:
                raise EvidenceError(
                    "tee-evidence-invalid",
                    f"Nitro document: {name} is not issued by "
                    f"{certs[i - 1].subject.rfc4514_string()} ({type(exc).__name__}: {exc})",
                ) from None
    start = max(int(c.not_valid_before_utc.timestamp()) for c in certs)
    end = min(int(c.not_valid_after_utc.timestamp()) for c in certs)
    subjects = [c.subject.rfc4514_string() for c in reversed(certs)]
    return certs[-1], subjects, start, end


def verify_document(data: bytes, *, at: int, policy: EvidencePolicy | None = None) -> TeeClaims:
    """Verify a Nitro attestation document as of unix time ``at`` (see the module's
    docstring for every check). The caller applies the debug policy
    (:func:`ogkit.tee.policy.policy_findings`) and the key binding."""
    try:
        return _verify_document(data, at, policy or EvidencePolicy())
    except EvidenceError:
        raise
    except Exception as exc:  # hostile bytes: cryptography parses certificate fields lazily
        raise _bad(f"{type(exc).__name__}: {exc}"[:300]) from None


def _verify_document(data: bytes, at: int, policy: EvidencePolicy) -> TeeClaims:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    started = time.perf_counter()
    doc = parse_document(data)
    leaf, subjects, start, end = _check_chain(doc, at, policy)
    when = at
    if not start <= at <= end:
        if not policy.allow_expired_collateral:
            raise EvidenceError(
                "tee-collateral-expired",
                f"Nitro document: its certificates are valid together from {start} to {end} "
                f"(unix s), not at the verification time {at}",
            )
        when = min(max(at, start), end)
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise EvidenceError("tee-evidence-invalid", "Nitro document: the signing key is not P-384")
    r = int.from_bytes(doc.signature[:48], "big")
    s = int.from_bytes(doc.signature[48:], "big")
    try:
        key.verify(encode_dss_signature(r, s), doc.sig_structure(), ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise EvidenceError(
            "tee-evidence-invalid", "Nitro document: the COSE signature does not verify"
        ) from None
    registers = {f"pcr{i}": doc.pcrs[i] for i in (0, 1, 2)}
    return TeeClaims(
        tee="nitro",
        registers={k: "0x" + v.hex() for k, v in registers.items()},
        measurement=measurement_hash("nitro", registers),
        report_data=doc.user_data or b"",
        public_key=doc.public_key,
        nonce=doc.nonce,
        debug=all(not any(v) for v in registers.values()),
        tcb_status="n/a",
        advisory_ids=(),
        signer_chain=tuple(subjects),
        root_sha256=policy.nitro_root_sha256,
        verified_at=int(when),
        valid_from=start,
        valid_until=end,
        generated_at=doc.timestamp_ms // 1000,
        seconds=time.perf_counter() - started,
    )

"""The Nitro Secure Module (``/dev/nsm``) inside an AWS Nitro enclave: one request, one
attestation document.

The driver (Linux ``drivers/misc/nsm.c``; AWS's nsm-api) takes one ioctl,
``_IOWR(0x0A, 0, struct nsm_message)``, whose argument is two iovecs — the CBOR request
(at most 4 KiB) and a buffer for the CBOR response (at most 12 KiB); the driver writes
the response's length back into the second iovec. Requests and responses are CBOR maps
named after the operation::

    request:  {"Attestation": {"user_data": bstr|null, "nonce": bstr|null, "public_key": bstr|null}}
    response: {"Attestation": {"document": bstr}}   or   {"Error": "InvalidArgument" | …}

Only the encoding, the decoding and the ioctl number can be tested outside an enclave;
the ioctl itself runs only where ``/dev/nsm`` exists.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

from ogkit.tee.claims import EnclaveUnavailable, EvidenceError

__all__ = [
    "NSM_DEVICE",
    "NSM_IOCTL_REQUEST",
    "NsmMessage",
    "attestation_document",
    "decode_response",
    "encode_attestation_request",
]

NSM_DEVICE = "/dev/nsm"
NSM_IOCTL_MAGIC = 0x0A
NSM_REQUEST_MAX_SIZE = 0x1000
NSM_RESPONSE_MAX_SIZE = 0x3000


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class NsmMessage(ctypes.Structure):
    """``struct nsm_message { struct iovec request; struct iovec response; }``."""

    _fields_ = [("request", _IoVec), ("response", _IoVec)]


def _iowr(magic: int, number: int, size: int) -> int:
    """Linux ``_IOWR``: direction read|write (3) << 30 | size << 16 | magic << 8 | nr."""
    return (3 << 30) | (size << 16) | (magic << 8) | number


NSM_IOCTL_REQUEST = _iowr(NSM_IOCTL_MAGIC, 0, ctypes.sizeof(NsmMessage))


def encode_attestation_request(
    user_data: bytes | None = None, nonce: bytes | None = None, public_key: bytes | None = None
) -> bytes:
    """The CBOR of an ``Attestation`` request (each field at most 512 bytes, the key 1 KiB)."""
    import cbor2

    for name, value, limit in (
        ("user_data", user_data, 512),
        ("nonce", nonce, 512),
        ("public_key", public_key, 1024),
    ):
        if value is not None and len(value) > limit:
            raise EvidenceError("tee-evidence-malformed", f"NSM {name} is at most {limit} bytes")
    body = {"user_data": user_data, "nonce": nonce, "public_key": public_key}
    encoded = cbor2.dumps(
        {"Attestation": {k: (None if v is None else bytes(v)) for k, v in body.items()}}
    )
    if len(encoded) > NSM_REQUEST_MAX_SIZE:
        raise EvidenceError("tee-evidence-malformed", "NSM request exceeds 4 KiB")
    return encoded


def decode_response(data: bytes) -> bytes:
    """The attestation document from an NSM response, or :class:`EvidenceError` with the
    module's error code."""
    import cbor2

    try:
        response: Any = cbor2.loads(data)
    except Exception as exc:
        raise EvidenceError("tee-evidence-malformed", f"NSM response is not CBOR: {exc}") from None
    if isinstance(response, dict) and "Error" in response:
        raise EvidenceError("tee-evidence-malformed", f"the NSM refused: {response['Error']!r:.80}")
    if isinstance(response, dict) and isinstance(response.get("Attestation"), dict):
        document = response["Attestation"].get("document")
        if isinstance(document, bytes) and document:
            return document
    raise EvidenceError("tee-evidence-malformed", f"unexpected NSM response {response!r:.80}")


def attestation_document(
    user_data: bytes | None = None,
    nonce: bytes | None = None,
    public_key: bytes | None = None,
    *,
    device: str = NSM_DEVICE,
) -> bytes:
    """Ask the NSM for a signed attestation document carrying ``user_data``, ``nonce`` and
    ``public_key``. Raises :class:`EnclaveUnavailable` where there is no NSM device."""
    import fcntl

    request = encode_attestation_request(user_data, nonce, public_key)
    try:
        fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise EnclaveUnavailable(
            f"no Nitro Secure Module at {device} ({exc.strerror}): the nitro attester runs only "
            "inside an AWS Nitro enclave"
        ) from None
    try:
        req = ctypes.create_string_buffer(request, len(request))
        resp = ctypes.create_string_buffer(NSM_RESPONSE_MAX_SIZE)
        msg = NsmMessage(
            _IoVec(ctypes.addressof(req), len(request)),
            _IoVec(ctypes.addressof(resp), NSM_RESPONSE_MAX_SIZE),
        )
        try:
            fcntl.ioctl(fd, NSM_IOCTL_REQUEST, msg, True)
        except OSError as exc:
            raise EnclaveUnavailable(f"the NSM ioctl on {device} failed: {exc}") from None
        length = int(msg.response.len)
        return decode_response(resp.raw[: min(length, NSM_RESPONSE_MAX_SIZE)])
    finally:
        os.close(fd)

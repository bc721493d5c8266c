"""Real TEE evidence (tests/tee/vectors, sources in its README) and the times it verifies at.

Collateral and certificates expire, so each vector is verified at a pinned unix time
inside its validity window, the way a verifier re-checks an old batch as of its commit's
block time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parent / "vectors"


@dataclass(frozen=True)
class Quote:
    name: str
    tee: str
    quote: bytes
    collateral: dict[str, Any]
    at: int  # a time inside the collateral's window
    tcb_status: str


def _quote(name: str, tee: str, at: int, status: str) -> Quote:
    return Quote(
        name,
        tee,
        (VECTORS / f"{name}.bin").read_bytes(),
        json.loads((VECTORS / f"{name}_collateral.json").read_text()),
        at,
        status,
    )


TDX_V4 = _quote("tdx_quote", "tdx", 1_752_000_000, "UpToDate")  # 2025-07-08
TDX_V5 = _quote("tdx_quote_v5", "tdx", 1_793_000_000, "UpToDate")  # 2026-10-26
SGX = _quote("sgx_quote", "sgx", 1_752_000_000, "ConfigurationAndSWHardeningNeeded")
NITRO = (VECTORS / "nitro_blindai.cbor").read_bytes()
NITRO_AT = 1_679_495_400  # 2023-03-22T14:30Z, a minute after the document was made

"""What a call costs: rows × the model's price in the ModelRegistry, read from the chain.

The registry keys registrations by (model id, owner) and the owner may change its price
at any time, so the node reads it for every quote (a short cache keeps a burst of
requests to one read a second). A payment signed for an old price no longer matches the
requirements and is refused with the new price; nobody pays what they did not sign.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ogkit.errors import ConfigError

if TYPE_CHECKING:
    from ogkit.chain.client import ChainClient
    from ogkit.hub.manifest import ModelManifest

__all__ = ["RegistryPrice", "registry_price"]


def registry_price(chain: ChainClient, manifest: ModelManifest) -> int:
    """The price per row (OPG base units) the model's owner registered on ``chain``;
    ConfigError naming the command that registers it otherwise."""
    registry = chain.contract("ModelRegistry")
    registered, price, deprecated = chain.call(
        registry.functions.pricing(bytes.fromhex(manifest.model_id[2:]), manifest.owner)
    )
    if not registered:
        raise ConfigError(
            f"model {manifest.ref} ({manifest.model_id}) of {manifest.owner} is not in the "
            f"ModelRegistry on {chain.name}: its owner runs `ogkit hub register {manifest.ref} "
            "--key OWNER` first"
        )
    if deprecated:
        raise ConfigError(
            f"model {manifest.ref} is deprecated in the ModelRegistry on {chain.name}; serve "
            "a current version"
        )
    return int(price)


@dataclass
class RegistryPrice:
    """:func:`registry_price`, cached for ``ttl`` seconds."""

    chain: ChainClient
    manifest: ModelManifest
    ttl: float = 1.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._value: int | None = None
        self._read_at = 0.0

    def per_row(self) -> int:
        with self._lock:
            if self._value is None or time.monotonic() - self._read_at > self.ttl:
                self._value = registry_price(self.chain, self.manifest)
                self._read_at = time.monotonic()
            return self._value

    def quote(self, rows: int) -> int:
        return int(rows) * self.per_row()

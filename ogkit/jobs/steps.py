"""The small idempotent steps the shipped notebooks call, so that re-running a notebook
on a persistent home is safe."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ogkit.errors import ConfigError, ModelNotFoundError

if TYPE_CHECKING:
    from ogkit.chain.client import ChainClient

__all__ = ["ensure_published", "notebook_home", "top_up", "write_summary"]


def notebook_home(home: str | Path | None) -> Path:
    """The ogkit home a notebook works in: ``home``, or a fresh temporary folder when it
    is empty, so ad-hoc runs never touch ``~/.ogkit``."""
    if home:
        path = Path(home).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path.resolve()
    return Path(tempfile.mkdtemp(prefix="ogkit-notebook-"))


def ensure_published(
    hub: Any,
    path: str | Path,
    *,
    name: str,
    version: str,
    price: int,
    signer: Any,
    description: str = "",
    tags: Iterable[str] = (),
    license: str = "",
) -> Any:
    """``hub.publish`` unless ``name@version`` is already there; returns its manifest.

    An existing version must hold the same bytes (versions are immutable): a different
    file under the same version is a :class:`ConfigError`, not a silent reuse.
    """
    from ogkit.store import content_id

    data = Path(path).read_bytes()
    try:
        manifest = hub.manifest(f"{name}@{version}")
    except ModelNotFoundError:
        return hub.publish(
            path,
            name=name,
            version=version,
            price=price,
            signer=signer,
            description=description,
            tags=list(tags),
            license=license,
        )
    if manifest.model_id != content_id(data):
        raise ConfigError(
            f"{name}@{version} is already published with other bytes ({manifest.model_id}); "
            f"publish {path} under a new version"
        )
    return manifest


def top_up(chain: ChainClient, addresses: Iterable[str], *, eth: int, opg: int) -> None:
    """Fund dev accounts up to ``eth`` wei and ``opg`` OPG base units from the chain's
    deployer (devnet and embedded chain); accounts holding half of that are left alone."""
    token = chain.contract("OPGToken")
    for address in addresses:
        have_eth = int(chain.w3.eth.get_balance(address))
        have_opg = int(chain.call(token.functions.balanceOf(address)))
        if have_eth < eth // 2 or have_opg < opg // 2:
            chain.fund(address, eth=max(0, eth - have_eth), opg=max(0, opg - have_opg))


def _json_default(value: Any) -> Any:
    return str(value)


def write_summary(summary: Mapping[str, Any], path: str | Path | None) -> Path | None:
    """Write a notebook's summary dict as JSON to ``path`` (nothing when it is empty);
    pipelines read it back into their run summary."""
    if not path:
        return None
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.write_text(json.dumps(dict(summary), indent=2, sort_keys=True, default=_json_default))
    tmp.replace(dest)
    return dest

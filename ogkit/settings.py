"""Settings: the one place ogkit reads its environment.

The CLI and the notebooks call :meth:`Settings.from_env` once, at the edge, and pass
what it holds into the steps (``hub=``, ``store=``, ``allowlist=``, ``journal=``,
``home=``, ``chain=``). No step reads the environment itself.

==========================  ==============================================================
variable                    meaning
==========================  ==============================================================
``OGKIT_HOME``              keys, hub index, allowlist, journals (default ``~/.ogkit``)
``OGKIT_STORE``             the content-addressed store, any fsspec URL
                            (default ``<home>/store``)
``OGKIT_CHAIN``             ``devnet`` (default), ``embedded`` or an ``http(s)://`` RPC URL;
                            ``chain_from_env`` says it was set (``ogkit infer`` then signs
                            for it, as ``--chain``)
``OGKIT_SCHEDULER``         a Dask scheduler address (default: a local cluster)
``OGKIT_WORKERS``           local cluster workers for CLI commands (default: one per core;
                            ``0``: run in the command's own process, right for small data)
``OGKIT_ANVIL``             an anvil binary instead of the npm-installed one
``OGKIT_DEVNET_PORT``       the devnet's port instead of the default
``OGKIT_DATA_DIR``          the sample data folder instead of the repository's ``data/``
``OGKIT_KEY_PASSWORD``      the password of encrypted keystores
``OGKIT_KEY_<NAME>``        a private key given directly (hex), read by the key store
``OGKIT_NO_NUMBA``          ``1``: hash with the plain-Python Keccak (debugging)
==========================  ==============================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Settings", "ogkit_home", "store_url"]


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("OGKIT_HOME") or Path.home() / ".ogkit").expanduser()


@dataclass(frozen=True)
class Settings:
    """Everything ogkit takes from its environment, read once."""

    home: Path
    store: str
    chain: str = "devnet"
    scheduler: str | None = None
    workers: int | None = None
    anvil: str | None = None
    devnet_port: int | None = None
    data_dir: str | None = None
    chain_from_env: bool = False  # OGKIT_CHAIN was set: ``chain`` is a choice, not the default

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = _home(env)
        port = env.get("OGKIT_DEVNET_PORT")
        chain = (env.get("OGKIT_CHAIN") or "").strip()
        return cls(
            home=home,
            store=env.get("OGKIT_STORE") or str(home / "store"),
            chain=chain or "devnet",
            chain_from_env=bool(chain),
            scheduler=env.get("OGKIT_SCHEDULER") or None,
            workers=_workers(env.get("OGKIT_WORKERS")),
            anvil=env.get("OGKIT_ANVIL") or None,
            devnet_port=int(port) if port else None,
            data_dir=env.get("OGKIT_DATA_DIR") or None,
        )


def _workers(text: str | None) -> int | None:
    if not text:
        return None
    if not text.strip().isdigit():
        from ogkit.errors import ConfigError

        raise ConfigError(f"OGKIT_WORKERS must be a whole number (0: no cluster), not {text!r}")
    return int(text)


def ogkit_home() -> Path:
    """The ogkit home folder: ``$OGKIT_HOME`` or ``~/.ogkit`` (edge code only)."""
    return _home(os.environ)


def store_url(home: Path | None = None) -> str:
    """The store location: ``$OGKIT_STORE`` or ``<home>/store`` (edge code only)."""
    return os.environ.get("OGKIT_STORE") or str((home or ogkit_home()) / "store")

"""Where ogkit keeps its files, read from the environment once per call.

``OGKIT_HOME`` (default ``~/.ogkit``) holds keys, the hub index and, unless
``OGKIT_STORE`` names another fsspec URL, the content-addressed store.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ogkit_home", "store_url"]


def ogkit_home() -> Path:
    """The ogkit home folder: ``$OGKIT_HOME`` or ``~/.ogkit``."""
    return Path(os.environ.get("OGKIT_HOME") or Path.home() / ".ogkit").expanduser()


def store_url(home: Path | None = None) -> str:
    """The store location: ``$OGKIT_STORE`` (any fsspec URL) or ``<home>/store``."""
    return os.environ.get("OGKIT_STORE") or str((home or ogkit_home()) / "store")

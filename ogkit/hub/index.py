"""The hub index: which model versions exist, queryable. SQLite by default.

The manifests in the store are the source of truth; the index is a query cache
that :meth:`ogkit.hub.Hub.reindex` can rebuild from them. ``ModelIndex`` is the
interface an on-chain ModelRegistry mirror implements too.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ogkit.hub.manifest import ModelManifest
from ogkit.hub.semver import SemVer

__all__ = ["HubEntry", "ModelIndex", "SqliteIndex"]


@dataclass(frozen=True)
class HubEntry:
    """A manifest plus the mutable index state around it."""

    manifest: ModelManifest
    deprecated: bool = False
    deprecation_reason: str = ""

    def to_dict(self) -> dict:
        return {
            **self.manifest.to_dict(),
            "deprecated": self.deprecated,
            "deprecation_reason": self.deprecation_reason,
        }


class ModelIndex(Protocol):
    def add(self, manifest: ModelManifest) -> None: ...
    def get(self, name: str, version: str) -> HubEntry | None: ...
    def versions(self, name: str) -> list[HubEntry]: ...
    def by_model_id(self, model_id: str) -> list[HubEntry]: ...
    def search(
        self, text: str | None = None, tag: str | None = None, owner: str | None = None
    ) -> list[HubEntry]: ...
    def set_deprecated(self, name: str, version: str, reason: str) -> None: ...
    def clear(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    model_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    price TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    deprecated INTEGER NOT NULL DEFAULT 0,
    deprecation_reason TEXT NOT NULL DEFAULT '',
    manifest_json TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE INDEX IF NOT EXISTS models_by_id ON models (model_id);
CREATE TABLE IF NOT EXISTS tags (name TEXT, version TEXT, tag TEXT);
CREATE INDEX IF NOT EXISTS tags_by_tag ON tags (tag);
"""


class SqliteIndex:
    """ModelIndex in one SQLite file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        return db

    @staticmethod
    def _entry(row: sqlite3.Row) -> HubEntry:
        manifest = ModelManifest.from_dict(json.loads(row["manifest_json"]))
        return HubEntry(manifest, bool(row["deprecated"]), row["deprecation_reason"])

    def add(self, manifest: ModelManifest) -> None:
        with closing(self._connect()) as db, db:
            db.execute(
                "INSERT INTO models (name, version, model_id, owner, price, created_at, "
                "manifest_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    manifest.name,
                    manifest.version,
                    manifest.model_id,
                    manifest.owner.lower(),
                    str(manifest.price_per_inference),
                    manifest.created_at,
                    json.dumps(manifest.to_dict(), sort_keys=True),
                ),
            )
            db.executemany(
                "INSERT INTO tags (name, version, tag) VALUES (?, ?, ?)",
                [(manifest.name, manifest.version, t) for t in manifest.tags],
            )

    def get(self, name: str, version: str) -> HubEntry | None:
        with closing(self._connect()) as db:
            row = db.execute(
                "SELECT * FROM models WHERE name = ? AND version = ?", (name, version)
            ).fetchone()
        return self._entry(row) if row else None

    def versions(self, name: str) -> list[HubEntry]:
        with closing(self._connect()) as db:
            rows = db.execute("SELECT * FROM models WHERE name = ?", (name,)).fetchall()
        entries = [self._entry(r) for r in rows]
        return sorted(entries, key=lambda e: SemVer.parse(e.manifest.version))

    def by_model_id(self, model_id: str) -> list[HubEntry]:
        with closing(self._connect()) as db:
            rows = db.execute(
                "SELECT * FROM models WHERE model_id = ?", (model_id.lower(),)
            ).fetchall()
        return [self._entry(r) for r in rows]

    def search(
        self, text: str | None = None, tag: str | None = None, owner: str | None = None
    ) -> list[HubEntry]:
        query = "SELECT * FROM models WHERE 1 = 1"
        args: list[str] = []
        if text:
            query += " AND instr(lower(name), ?) > 0"
            args.append(text.lower())
        if owner:
            query += " AND owner = ?"
            args.append(owner.lower())
        if tag:
            query += " AND EXISTS (SELECT 1 FROM tags t WHERE t.name = models.name "
            query += "AND t.version = models.version AND t.tag = ?)"
            args.append(tag)
        with closing(self._connect()) as db:
            rows = db.execute(query, args).fetchall()
        entries = [self._entry(r) for r in rows]
        return sorted(entries, key=lambda e: (e.manifest.name, SemVer.parse(e.manifest.version)))

    def set_deprecated(self, name: str, version: str, reason: str) -> None:
        with closing(self._connect()) as db, db:
            db.execute(
                "UPDATE models SET deprecated = 1, deprecation_reason = ? "
                "WHERE name = ? AND version = ?",
                (reason, name, version),
            )

    def clear(self) -> None:
        with closing(self._connect()) as db, db:
            db.execute("DELETE FROM models")
            db.execute("DELETE FROM tags")

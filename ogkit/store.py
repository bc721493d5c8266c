"""A content-addressed store on any fsspec filesystem.

Objects are addressed by ``0x`` + keccak256 of their bytes and kept under
``<root>/<kind>/<id[2:4]>/<id>``; reading an object re-hashes it, so an altered
or truncated object is refused. Plain named files (manifests, indexes) sit
beside them. Every write goes to a temporary name first and is then moved, so a
crash never leaves a half-written object under its final name.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from ogkit.crypto.keccak import keccak256
from ogkit.errors import ArtifactError, ArtifactIntegrityError, ConfigError

__all__ = ["ContentStore", "content_id"]

log = logging.getLogger(__name__)


def _keccak_hasher() -> Any:
    """An incremental Ethereum keccak256 (the C implementation ``keccak256`` uses)."""
    try:
        from _pysha3 import keccak_256

        return keccak_256()
    except ImportError:  # pragma: no cover - depends on the environment
        from Crypto.Hash import keccak

        return keccak.new(digest_bits=256)


def content_id(data: bytes) -> str:
    """The content id of ``data``: ``0x`` + hex keccak256."""
    return "0x" + keccak256(data).hex()


class ContentStore:
    """Content-addressed objects plus named files under one fsspec URL."""

    def __init__(self, url: str | Path) -> None:
        self.url = str(url)
        try:
            self.fs, root = fsspec.core.url_to_fs(self.url)
        except (ValueError, ImportError) as exc:
            raise ConfigError(
                f"store URL {self.url!r} is not usable: {exc}; use a local folder or an "
                "fsspec URL such as file:///path, memory://name or s3://bucket/prefix"
            ) from exc
        self.root = root.rstrip("/")
        self.is_local = isinstance(self.fs, LocalFileSystem)

    @property
    def shared(self) -> bool:
        """True when other processes (Dask workers) see the same files: every fsspec
        filesystem but ``memory://``, which lives inside one process."""
        return not isinstance(self.fs, MemoryFileSystem)

    def __repr__(self) -> str:
        return f"ContentStore({self.url!r})"

    def path(self, relpath: str) -> str:
        return f"{self.root}/{relpath}"

    def object_path(self, kind: str, object_id: str) -> str:
        return self.path(f"{kind}/{object_id[2:4]}/{object_id}")

    # -- named files -------------------------------------------------------------------------
    def write_bytes(self, relpath: str, data: bytes, *, overwrite: bool = True) -> str:
        """Write ``data`` to ``relpath`` atomically; with ``overwrite=False`` refuse to replace."""
        final = self.path(relpath)
        if not overwrite and self.fs.exists(final):
            raise ArtifactError(f"{self.url}/{relpath} already exists and is immutable")
        parent = final.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
        try:
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, final)
        except BaseException:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
            raise
        return final

    def read_bytes(self, relpath: str) -> bytes:
        try:
            return self.fs.cat_file(self.path(relpath))
        except FileNotFoundError:
            raise ArtifactError(f"{self.url}/{relpath} does not exist") from None

    def move(self, src: str, dst: str) -> str:
        """Move the named file ``src`` to ``dst`` (a rename on a local folder: atomic)."""
        final = self.path(dst)
        self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
        try:
            self.fs.mv(self.path(src), final)
        except FileNotFoundError:
            raise ArtifactError(f"{self.url}/{src} does not exist") from None
        return final

    def remove(self, relpath: str, *, recursive: bool = False) -> None:
        """Delete ``relpath`` (a folder with ``recursive``); nothing if it is not there."""
        full = self.path(relpath)
        if self.fs.exists(full):
            self.fs.rm(full, recursive=recursive)

    def exists(self, relpath: str) -> bool:
        return self.fs.exists(self.path(relpath))

    def listdir(self, relpath: str) -> list[str]:
        """Names (not paths) directly under ``relpath``; empty if it does not exist."""
        full = self.path(relpath)
        if not self.fs.exists(full):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(full, detail=False))

    def local_path(self, relpath: str) -> Path:
        """The local path of ``relpath``; only for stores on the local filesystem."""
        if not self.is_local:
            raise ConfigError(f"{self.url} is not a local folder")
        return Path(self.path(relpath))

    # -- content-addressed objects -----------------------------------------------------------
    def put(self, kind: str, data: bytes) -> str:
        """Store ``data`` under its content id (a no-op if already present)."""
        object_id = content_id(data)
        final = self.object_path(kind, object_id)
        if not self.fs.exists(final):
            self.write_bytes(final[len(self.root) + 1 :], data)
            log.debug("stored %s %s (%d bytes)", kind, object_id, len(data))
        return object_id

    def put_file(self, kind: str, path: str | Path, *, chunk: int = 1 << 22) -> str:
        """Store the file at the local ``path`` under its content id, streamed: hashed and
        copied chunk by chunk (memory stays flat in the file's size), then moved."""
        hasher = _keccak_hasher()
        parent = self.path(f"{kind}/.incoming")
        self.fs.makedirs(parent, exist_ok=True)
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
        try:
            with open(path, "rb") as src, self.fs.open(tmp, "wb") as dst:
                for block in iter(lambda: src.read(chunk), b""):
                    hasher.update(block)
                    dst.write(block)
            object_id = "0x" + hasher.digest().hex()
            final = self.object_path(kind, object_id)
            if self.fs.exists(final):
                self.fs.rm(tmp)
            else:
                self.fs.makedirs(final.rsplit("/", 1)[0], exist_ok=True)
                self.fs.mv(tmp, final)
                log.debug("stored %s %s from %s", kind, object_id, path)
        except BaseException:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
            raise
        return object_id

    def has(self, kind: str, object_id: str) -> bool:
        return self.fs.exists(self.object_path(kind, object_id))

    def get(self, kind: str, object_id: str) -> bytes:
        """The bytes of ``object_id``; raises if missing or if they no longer hash to the id."""
        try:
            data = self.fs.cat_file(self.object_path(kind, object_id))
        except FileNotFoundError:
            raise ArtifactError(f"{kind} {object_id} is not in the store {self.url}") from None
        actual = content_id(data)
        if actual != object_id:
            raise ArtifactIntegrityError(
                f"{kind} {object_id} in {self.url} is corrupt: its bytes hash to {actual}; "
                "restore it from a good copy"
            )
        return data

    def ids(self, kind: str) -> Iterator[str]:
        for shard in self.listdir(kind):
            for name in self.listdir(f"{kind}/{shard}"):
                if name.startswith("0x"):
                    yield name

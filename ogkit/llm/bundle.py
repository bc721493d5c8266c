"""A language model as one content-addressed blob: the bundle of its folder.

An onnxruntime-genai model is a folder (``model.onnx`` and maybe its external data,
``genai_config.json``, the tokenizer files and the chat template). The hub stores
single blobs addressed by keccak256, so the folder is packed into one canonical byte
string (docs/spec.md §12.1)::

    b"ogkit.bundle.v1\\n" || u32be(count)
    || for each file, names sorted by their UTF-8 bytes:
         u32be(len(name)) || name || u64be(len(data)) || data

The model id is keccak256 of those bytes, so it names every file, tokenizer and template
included. ``unpack`` parses strictly (sorted unique names, safe relative paths, no
trailing bytes); ``materialize`` writes a bundle to a cache folder once, atomically, and
checks the files against the bundle on every later use.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ogkit.errors import ConfigError, InvalidModelError
from ogkit.store import content_id

__all__ = ["BUNDLE_MAGIC", "materialize", "pack", "pack_folder", "unpack"]

log = logging.getLogger(__name__)

BUNDLE_MAGIC = b"ogkit.bundle.v1\n"
MAX_FILES = 4096
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}){0,7}")


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name) or any(part in (".", "..") for part in name.split("/")):
        raise InvalidModelError(
            f"bundle file name {name!r:.80} is not a plain relative path (letters, digits, "
            "'_', '.', '-', '/' only)"
        )


def pack(files: Mapping[str, bytes]) -> bytes:
    """The canonical bundle of ``files`` (relative name -> bytes)."""
    if not files:
        raise InvalidModelError("a bundle needs at least one file")
    names = sorted(files, key=lambda n: n.encode())
    out = [BUNDLE_MAGIC, struct.pack(">I", len(names))]
    for name in names:
        _check_name(name)
        raw = name.encode()
        out += [struct.pack(">I", len(raw)), raw, struct.pack(">Q", len(files[name])), files[name]]
    return b"".join(out)


def pack_folder(folder: str | Path) -> bytes:
    """The bundle of every regular file under ``folder`` (hidden files left out)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder; give the onnxruntime-genai model folder")
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in rel.split("/")) or not path.is_file():
            continue
        files[rel] = path.read_bytes()
    return pack(files)


def unpack(data: bytes) -> dict[str, bytes]:
    """The files of a bundle; :class:`InvalidModelError` if it is not exactly one."""
    view = memoryview(data)
    if bytes(view[: len(BUNDLE_MAGIC)]) != BUNDLE_MAGIC:
        raise InvalidModelError("not an ogkit bundle (it does not start with ogkit.bundle.v1)")
    pos = len(BUNDLE_MAGIC)

    def take(n: int) -> memoryview:
        nonlocal pos
        if n < 0 or pos + n > len(view):
            raise InvalidModelError("the bundle is truncated")
        chunk = view[pos : pos + n]
        pos += n
        return chunk

    (count,) = struct.unpack(">I", take(4))
    if not 1 <= count <= MAX_FILES:
        raise InvalidModelError(f"a bundle holds 1 to {MAX_FILES} files, this one says {count}")
    files: dict[str, bytes] = {}
    last = b""
    for _ in range(count):
        (n,) = struct.unpack(">I", take(4))
        raw = bytes(take(n))
        if raw <= last:
            raise InvalidModelError("bundle file names are not sorted and unique")
        last = raw
        try:
            name = raw.decode()
        except UnicodeDecodeError:
            raise InvalidModelError("a bundle file name is not UTF-8") from None
        _check_name(name)
        (size,) = struct.unpack(">Q", take(8))
        files[name] = bytes(take(size))
    if pos != len(view):
        raise InvalidModelError(f"the bundle has {len(view) - pos} bytes after its last file")
    return files


def _matches(folder: Path, files: Mapping[str, bytes]) -> bool:
    try:
        present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        if present != set(files):
            return False
        return all((folder / name).read_bytes() == data for name, data in files.items())
    except OSError:
        return False


def materialize(data: bytes, cache: str | Path, *, model_id: str | None = None) -> Path:
    """The folder ``<cache>/<model id>`` holding the bundle's files, written once
    (to a temporary folder, then renamed) and compared with the bundle on every call, so
    a file changed on disk is replaced, never loaded. ``model_id`` is the bundle's id when
    the caller has just hashed it (it is not hashed again)."""
    files = unpack(data)
    model_id = model_id or content_id(data)  # given: the caller hashed these bytes
    cache = Path(cache)
    folder = cache / model_id
    if folder.is_dir() and _matches(folder, files):
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{model_id[:10]}-", dir=cache))
    for name, blob in files.items():
        target = tmp / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob)
    if folder.exists():
        log.warning("model folder %s differs from its bundle; replacing it", folder)
        stale = cache / f".stale-{model_id[:10]}-{os.getpid()}"
        folder.rename(stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        tmp.rename(folder)
    except OSError:  # another process materialised it first
        shutil.rmtree(tmp, ignore_errors=True)
        if not _matches(folder, files):
            raise
    return folder

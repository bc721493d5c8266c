"""The SRS and the proving/verifying keys of a ZK profile, cached in the store.

* **SRS.** EZKL's KZG commitments need a structured reference string. ``gen_srs`` makes
  one locally from randomness its caller knows: whoever ran it can forge proofs, so it
  is **for development only** and marked so (``kind = "development"``). For real use,
  pass the file of a public ceremony (``srs_file=``), stored by content id.
* **Keys.** ``ezkl.setup`` on the compiled circuit and the SRS gives the proving key
  (large) and the verifying key. Both are cached per (model id, N, settings hash) under
  ``zk/keys/<model id>/n<N>/<settings hash>/`` with a ``keys.json`` naming the SRS and
  the key ids; a second set-up with the same SRS reuses them.

ezkl reads and writes files by path; :func:`materialise` gives a local path for any
store (the store's own path when it is a local folder, else a per-process cache).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ogkit.crypto.keccak import keccak256
from ogkit.errors import ArtifactError, ZkError
from ogkit.store import ContentStore
from ogkit.zk.profile import ZK_MODELS, ZK_SETTINGS, ZkProfile

log = logging.getLogger(__name__)

__all__ = [
    "SRS_DEVELOPMENT",
    "SRS_FILE",
    "ZkKeys",
    "check_keys",
    "ensure_srs",
    "load_keys",
    "materialise",
    "setup_keys",
]

SRS_DEVELOPMENT = "development"
SRS_FILE = "file"
ZK_SRS = "zk-srs"
ZK_KEYS = "zk-keys"
ZK_CIRCUITS = "zk-circuits"
_CACHE = Path(tempfile.gettempdir()) / "ogkit-zk-cache"


def _cid(data: bytes) -> str:
    return "0x" + keccak256(data).hex()


def materialise(store: ContentStore, kind: str, object_id: str, *, check: bool = False) -> Path:
    """A local file holding object ``object_id`` (a remote object is checked against its id
    once, when fetched). ``check`` hashes a local store's file too: what a review reads,
    where whoever shares the store could have put other bytes under the id."""
    if store.is_local:
        path = Path(store.object_path(kind, object_id))
        if not path.is_file():
            raise ArtifactError(f"{kind} {object_id} is not in the store {store.url}")
        if check and _cid(path.read_bytes()) != object_id:
            raise ZkError(
                f"{kind} {object_id} in {store.url} does not hash to its id; restore it from "
                "a good copy (or set it up again: `ogkit zk setup --force`)"
            )
        return path
    path = _CACHE / kind / object_id
    if not path.is_file():
        data = store.get(kind, object_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def _put_file(store: ContentStore, kind: str, path: Path) -> str:
    return store.put(kind, path.read_bytes())


@dataclass(frozen=True)
class ZkKeys:
    """Where a profile's keys and SRS are (content ids in the store)."""

    model_id: str
    chunk: int
    settings_hash: str
    profile_id: str
    srs_id: str
    srs_kind: str
    logrows: int
    circuit_id: str
    pk_id: str
    vk_id: str

    @property
    def keys_id(self) -> str:
        """What the chain registers: keccak256(profile id ‖ vk id ‖ SRS id)."""
        return _cid(
            bytes.fromhex(self.profile_id[2:])
            + bytes.fromhex(self.vk_id[2:])
            + bytes.fromhex(self.srs_id[2:])
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {"keys_id": self.keys_id}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ZkKeys:
        try:
            return cls(**{k: d[k] for k in cls.__dataclass_fields__})
        except (KeyError, TypeError) as exc:
            raise ZkError(f"keys record is malformed: {exc!r}; run `ogkit zk setup`") from exc


def keys_path(model_id: str, chunk: int, settings_hash: str) -> str:
    return f"zk/keys/{model_id}/n{int(chunk)}/{settings_hash}/keys.json"


def ensure_srs(
    store: ContentStore, logrows: int, *, srs_file: str | Path | None = None
) -> tuple[str, str]:
    """The SRS for ``logrows``: ``(srs id, kind)``. From ``srs_file`` when given (kind
    ``file``), else a development SRS made with ``gen_srs`` and reused from the store."""
    import ezkl

    if srs_file is not None:
        path = Path(srs_file)
        if not path.is_file():
            raise ZkError(f"SRS file {path} does not exist")
        return _put_file(store, ZK_SRS, path), SRS_FILE
    pointer = f"zk/srs/development-k{int(logrows)}.id"
    if store.exists(pointer):
        srs_id = store.read_bytes(pointer).decode().strip()
        if store.has(ZK_SRS, srs_id):
            return srs_id, SRS_DEVELOPMENT
    log.warning(
        "generating a DEVELOPMENT-ONLY SRS for 2^%d rows: whoever holds its randomness can "
        "forge proofs; pass an SRS file from a public ceremony for real use",
        logrows,
    )
    with tempfile.TemporaryDirectory(prefix="ogkit-srs-") as tmp:
        path = Path(tmp) / "kzg.srs"
        ezkl.gen_srs(str(path), int(logrows))
        srs_id = _put_file(store, ZK_SRS, path)
    store.write_bytes(pointer, srs_id.encode())
    return srs_id, SRS_DEVELOPMENT


def load_keys(store: ContentStore, profile: ZkProfile) -> ZkKeys:
    path = keys_path(profile.model_id, profile.chunk, profile.settings_hash)
    try:
        d = json.loads(store.read_bytes(path))
    except ArtifactError:
        raise ZkError(
            f"no keys for model {profile.model_id} N={profile.chunk}; run "
            f"`ogkit zk setup {profile.model_id} --chunk {profile.chunk}`"
        ) from None
    keys = ZkKeys.from_dict(d)
    if keys.profile_id != profile.profile_id:
        raise ZkError(
            f"the cached keys were made for another profile ({keys.profile_id}); rerun "
            "`ogkit zk setup`"
        )
    return keys


def compile_circuit(store: ContentStore, profile: ZkProfile) -> str:
    """Compile the profile's circuit (rewritten model + settings); returns its id."""
    import ezkl

    model = materialise(store, ZK_MODELS, profile.zk_model_id)
    settings = materialise(store, ZK_SETTINGS, profile.settings_hash)
    with tempfile.TemporaryDirectory(prefix="ogkit-zk-") as tmp:
        out = Path(tmp) / "model.compiled"
        if not ezkl.compile_circuit(str(model), str(out), str(settings)):
            raise ZkError(f"ezkl could not compile the circuit of {profile.model_id}")
        return _put_file(store, ZK_CIRCUITS, out)


def setup_keys(
    store: ContentStore,
    profile: ZkProfile,
    *,
    srs_file: str | Path | None = None,
    force: bool = False,
) -> ZkKeys:
    """Proving and verifying keys for ``profile``, from the cache when they were made
    with the same SRS."""
    import ezkl

    srs_id, kind = ensure_srs(store, profile.logrows, srs_file=srs_file)
    path = keys_path(profile.model_id, profile.chunk, profile.settings_hash)
    if not force and store.exists(path):
        try:
            keys = load_keys(store, profile)
            if keys.srs_id == srs_id and store.has(ZK_KEYS, keys.pk_id):
                log.info("ZK keys of %s N=%d from the cache", profile.model_id, profile.chunk)
                return keys
        except ZkError:
            pass
    circuit_id = compile_circuit(store, profile)
    circuit = materialise(store, ZK_CIRCUITS, circuit_id)
    srs = materialise(store, ZK_SRS, srs_id)
    with tempfile.TemporaryDirectory(prefix="ogkit-zk-") as tmp:
        pk, vk = Path(tmp) / "pk", Path(tmp) / "vk"
        log.info(
            "ZK set-up of %s N=%d (2^%d rows)", profile.model_id, profile.chunk, profile.logrows
        )
        if not ezkl.setup(str(circuit), str(vk), str(pk), str(srs), None, False):
            raise ZkError(f"ezkl set-up failed for {profile.model_id}")
        pk_id = _put_file(store, ZK_KEYS, pk)
        vk_id = _put_file(store, ZK_KEYS, vk)
    keys = ZkKeys(
        model_id=profile.model_id,
        chunk=profile.chunk,
        settings_hash=profile.settings_hash,
        profile_id=profile.profile_id,
        srs_id=srs_id,
        srs_kind=kind,
        logrows=profile.logrows,
        circuit_id=circuit_id,
        pk_id=pk_id,
        vk_id=vk_id,
    )
    store.write_bytes(path, json.dumps(keys.to_dict(), sort_keys=True, indent=2).encode())
    return keys


def check_keys(store: ContentStore, profile: ZkProfile, keys: ZkKeys, model: bytes) -> list[str]:
    """Re-derive what a profile and its keys claim, from the model bytes, the settings file
    and the SRS, and list every difference (empty: they hold). What a governor runs before
    approving a profile on chain: the rewritten model is reproduced from the model, the
    settings must state the profile's scale, decomposition, size and visibility, and a
    fresh ``ezkl.setup`` must give the same verifying key (set-up is deterministic)."""
    import ezkl

    from ogkit.zk.export import rewrite_for_ezkl

    problems = []
    if _cid(model) != profile.model_id:
        problems.append(f"the model bytes are {_cid(model)}, not the profile's {profile.model_id}")
    rewritten, _ = rewrite_for_ezkl(model, profile.chunk)
    if _cid(rewritten) != profile.zk_model_id:
        problems.append("the rewritten model is not the one the profile names")
    if keys.profile_id != profile.profile_id:
        problems.append("the keys were made for another profile")
    try:
        settings = json.loads(store.get(ZK_SETTINGS, profile.settings_hash))
        ra = settings["run_args"]
        stated = {
            "input_scale": profile.input_scale,
            "param_scale": profile.param_scale,
            "decomp_base": profile.decomp_base,
            "decomp_legs": profile.decomp_legs,
            "logrows": profile.logrows,
            "input_visibility": "Public",
            "output_visibility": "Public",
            "param_visibility": "Fixed",
        }
        for key, want in stated.items():
            if ra.get(key) != want:
                problems.append(f"settings {key} is {ra.get(key)!r}, the profile says {want!r}")
    except (ArtifactError, ValueError, KeyError, TypeError) as exc:
        problems.append(f"the settings file is missing or unreadable: {exc}")
        return problems
    if problems:
        return problems
    with tempfile.TemporaryDirectory(prefix="ogkit-zk-check-") as tmp:
        d = Path(tmp)
        (d / "model.onnx").write_bytes(rewritten)
        settings_path = materialise(store, ZK_SETTINGS, profile.settings_hash, check=True)
        if not ezkl.compile_circuit(str(d / "model.onnx"), str(d / "c"), str(settings_path)):
            return [*problems, "ezkl could not compile the circuit"]
        try:
            srs = materialise(store, ZK_SRS, keys.srs_id, check=True)
        except ZkError as exc:
            return [*problems, str(exc)]
        ezkl.setup(str(d / "c"), str(d / "vk"), str(d / "pk"), str(srs), None, False)
        vk_id = _cid((d / "vk").read_bytes())
    if vk_id != keys.vk_id:
        problems.append(f"a fresh set-up gives the verifying key {vk_id}, not {keys.vk_id}")
    return problems

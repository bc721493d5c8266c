"""The Model Hub: publish, find, pull and verify content-addressed ONNX models.

Blobs live in a :class:`~ogkit.store.ContentStore` under kind ``models`` (id =
keccak256 of the ONNX bytes); each version's signed manifest is an immutable
file ``manifests/<name>/<version>.json`` in the same store; an index (SQLite by
default) answers queries. Deprecation is the one mutable fact, recorded as a
record signed by the owner beside the manifest.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ogkit.errors import (
    ArtifactError,
    ArtifactIntegrityError,
    ConfigError,
    HubError,
    InvalidModelError,
    ModelIntegrityError,
    ModelNotFoundError,
    OgkitError,
    VersionError,
)
from ogkit.hub.index import HubEntry, ModelIndex, SqliteIndex
from ogkit.hub.manifest import ModelManifest, TensorSpec, extract_signature
from ogkit.hub.semver import SemVer
from ogkit.keys import Signer, recover_typed_data
from ogkit.settings import ogkit_home, store_url
from ogkit.store import ContentStore, content_id

if TYPE_CHECKING:  # onnx is imported where a model is parsed: it costs 0.5 s
    import onnx

__all__ = ["Hub", "ModelRef", "VerifyReport"]

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_ID_RE = re.compile(r"^0x[0-9a-f]{64}$")
MODELS = "models"


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference: ``name``, ``name@version`` or a ``0x…`` model id."""

    name: str | None = None
    version: str | None = None
    model_id: str | None = None

    @classmethod
    def parse(cls, ref: str) -> ModelRef:
        ref = ref.strip()
        if ref.startswith("0x"):
            if not _ID_RE.match(ref.lower()):
                raise ConfigError(f"model id {ref!r} must be 0x followed by 64 hex digits")
            return cls(model_id=ref.lower())
        name, _, version = ref.partition("@")
        if not _NAME_RE.match(name):
            raise ConfigError(
                f"model name {name!r} is not valid: lower-case letters, digits, '.', '_' "
                "or '-', starting with a letter or digit"
            )
        if version:
            SemVer.parse(version)
        return cls(name=name, version=version or None)

    def __str__(self) -> str:
        if self.model_id:
            return self.model_id
        return f"{self.name}@{self.version}" if self.version else str(self.name)


@dataclass(frozen=True)
class VerifyReport:
    ref: str
    model_id: str
    signature_ok: bool
    blob_ok: bool
    owner: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.signature_ok and self.blob_ok

    def to_dict(self) -> dict:
        return {
            "ref": self.ref,
            "model_id": self.model_id,
            "owner": self.owner,
            "signature_ok": self.signature_ok,
            "blob_ok": self.blob_ok,
            "ok": self.ok,
            "problems": list(self.problems),
        }


class Hub:
    """A permissionless model hub over a content store and an index."""

    def __init__(
        self,
        store: ContentStore | str | Path | None = None,
        index: ModelIndex | None = None,
        *,
        home: Path | str | None = None,
    ) -> None:
        self.home = Path(home) if home is not None else ogkit_home()
        if not isinstance(store, ContentStore):
            store = ContentStore(store or store_url(self.home))
        self.store = store
        self.index: ModelIndex = index or SqliteIndex(self.home / "hub.sqlite")

    def __repr__(self) -> str:
        return f"Hub(store={self.store.url!r})"

    # -- publishing -------------------------------------------------------------------------
    def publish(
        self,
        path: str | Path,
        *,
        name: str,
        version: str,
        price: int,
        signer: Signer,
        description: str = "",
        tags: list[str] | tuple[str, ...] = (),
        license: str = "",
        features: Mapping[str, Sequence[str]] | None = None,
        before_write: Callable[[ModelManifest], object] | None = None,
    ) -> ModelManifest:
        """Validate, store and sign a new model version. Nothing is written if a check fails.

        ``features`` names, per model input, the dataset columns it is built from (default:
        the model's own ``ogkit.features`` metadata, JSON, when it has one). They are signed
        with the manifest; infer and verifiers then bind columns by name, not by position.

        ``before_write`` is called with the signed manifest after every check and before
        anything is written (e.g. to register it on chain first); if it raises, nothing
        is written and the error propagates, so a retry publishes the version afresh.
        """
        ModelRef.parse(name)  # validates the name
        SemVer.parse(version)
        if int(price) < 0:
            raise ConfigError(f"price must be >= 0 OPG base units, got {price}")
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read model file {path}: {exc.strerror}") from None
        import onnx

        try:
            model = onnx.load_model_from_string(data)
            onnx.checker.check_model(model)
        except Exception as exc:
            raise InvalidModelError(
                f"{path} is not a valid ONNX model ({type(exc).__name__}: {exc}); "
                "export it again with onnx>=1.14"
            ) from None
        inputs, outputs = extract_signature(model)
        features = _features(features, model, inputs, path)
        return self.publish_blob(
            data,
            name=name,
            version=version,
            price=price,
            signer=signer,
            inputs=inputs,
            outputs=outputs,
            description=description,
            tags=tags,
            license=license,
            features=features,
            before_write=before_write,
        )

    def publish_blob(
        self,
        data: bytes,
        *,
        name: str,
        version: str,
        price: int,
        signer: Signer,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        description: str = "",
        tags: list[str] | tuple[str, ...] = (),
        license: str = "",
        features: Mapping[str, Sequence[str]] | None = None,
        before_write: Callable[[ModelManifest], object] | None = None,
    ) -> ModelManifest:
        """Publish ``data`` as it is, with the signature given: the version and owner checks
        and the writes of :meth:`publish`, for artefacts that are not one ONNX file (a
        language model's bundle, ``ogkit.llm.bundle``). The caller checks the bytes."""
        ModelRef.parse(name)
        semver = SemVer.parse(version)
        if int(price) < 0:
            raise ConfigError(f"price must be >= 0 OPG base units, got {price}")
        features = {k: tuple(v) for k, v in (features or {}).items()}
        existing = self.index.versions(name)
        if any(e.manifest.version == version for e in existing):
            raise VersionError(
                f"{name}@{version} is already published and versions are immutable; "
                "publish a greater version (to put it on chain: "
                f"`ogkit hub register {name}@{version} --chain CHAIN`)"
            )
        if existing:
            latest = SemVer.parse(existing[-1].manifest.version)
            if not semver > latest:
                raise VersionError(
                    f"{name}@{version} is not greater than the latest version {latest}; "
                    "new versions must increase"
                )
        if existing and existing[-1].manifest.owner.lower() != signer.address.lower():
            raise HubError(
                f"{name} is owned by {existing[-1].manifest.owner}; only its owner can "
                "publish new versions (choose another name)"
            )

        manifest = ModelManifest(
            name=name,
            version=version,
            owner=signer.address,
            price_per_inference=int(price),
            model_id=content_id(data),
            size_bytes=len(data),
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            description=description,
            tags=tuple(sorted(set(tags))),
            license=license,
            features=features,
            created_at=int(time.time()),
        ).signed_by(signer)

        if before_write is not None:
            before_write(manifest)
        self.store.put(MODELS, data)
        manifest_bytes = json.dumps(manifest.to_dict(), indent=2, sort_keys=True).encode()
        self.store.write_bytes(self._manifest_path(name, version), manifest_bytes, overwrite=False)
        self.index.add(manifest)
        log.info("published %s as %s", manifest.ref, manifest.model_id)
        return manifest

    @staticmethod
    def _manifest_path(name: str, version: str) -> str:
        return f"manifests/{name}/{version}.json"

    @staticmethod
    def _deprecation_path(name: str, version: str) -> str:
        return f"deprecations/{name}/{version}.json"

    @staticmethod
    def _deprecation_record(model_id: str, reason: str) -> dict:
        """The EIP-712 message an owner signs to deprecate the version ``model_id``."""
        return {
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                ],
                "Deprecation": [
                    {"name": "modelId", "type": "bytes32"},
                    {"name": "reason", "type": "string"},
                ],
            },
            "primaryType": "Deprecation",
            "domain": {"name": "ogkit-hub", "version": "1"},
            "message": {"modelId": model_id, "reason": reason},
        }

    def deprecate(self, ref: str, *, signer: Signer, reason: str = "") -> HubEntry:
        """Mark a version deprecated (owner only). It stays pullable by exact version or id."""
        entry = self.entry(ref)
        manifest = entry.manifest
        if signer.address.lower() != manifest.owner.lower():
            raise HubError(
                f"only the owner {manifest.owner} can deprecate {manifest.ref}, "
                f"not {signer.address}"
            )
        record = self._deprecation_record(manifest.model_id, reason)
        signature = signer.sign_typed_data(record)
        doc = {"ref": manifest.ref, "reason": reason, "typed_data": record, "signature": signature}
        self.store.write_bytes(
            self._deprecation_path(manifest.name, manifest.version),
            json.dumps(doc, indent=2).encode(),
        )
        self.index.set_deprecated(manifest.name, manifest.version, reason)
        return self.entry(manifest.ref)

    # -- finding ---------------------------------------------------------------------------
    def entry(self, ref: str | ModelRef) -> HubEntry:
        """The index entry for ``ref``; a bare name means the latest non-deprecated version."""
        parsed = ref if isinstance(ref, ModelRef) else ModelRef.parse(ref)
        if parsed.model_id:
            entries = self.index.by_model_id(parsed.model_id)
            if not entries:
                raise ModelNotFoundError(
                    f"no published model has id {parsed.model_id}; `ogkit hub list` shows them"
                )
            # Anyone can publish the same bytes under a name of their own: an id names one
            # manifest only when every manifest of it has one owner and one feature binding
            # (else a republisher's column order, or its address as the owner paid, would
            # be taken for the owner's).
            kinds = {(e.manifest.owner.lower(), _binding(e.manifest)) for e in entries}
            if len(kinds) > 1:
                refs = ", ".join(sorted(e.manifest.ref for e in entries)[:6])
                raise HubError(
                    f"model {parsed.model_id} is published by several owners or with several "
                    f"feature bindings ({refs}); name the one meant as name@version"
                )
            return entries[-1]
        assert parsed.name is not None
        if parsed.version:
            found = self.index.get(parsed.name, parsed.version)
            if found is None:
                known = [e.manifest.version for e in self.index.versions(parsed.name)]
                hint = f"known versions: {', '.join(known)}" if known else "no such model"
                raise ModelNotFoundError(f"{parsed} is not in the hub ({hint})")
            return found
        versions = self.index.versions(parsed.name)
        if not versions:
            raise ModelNotFoundError(
                f"no model named {parsed.name!r} in the hub; `ogkit hub list` shows them"
            )
        live = [e for e in versions if not e.deprecated]
        if not live:
            raise ModelNotFoundError(
                f"every version of {parsed.name} is deprecated; ask for one by exact version"
            )
        return live[-1]

    def manifest(self, ref: str | ModelRef) -> ModelManifest:
        return self.entry(ref).manifest

    def list(self, *, include_deprecated: bool = True) -> list[HubEntry]:
        return [e for e in self.index.search() if include_deprecated or not e.deprecated]

    def search(
        self, text: str | None = None, *, tag: str | None = None, owner: str | None = None
    ) -> list[HubEntry]:
        return self.index.search(text, tag, owner)

    # -- getting bytes -----------------------------------------------------------------------
    def model_bytes(self, ref: str | ModelRef) -> tuple[ModelManifest, bytes]:
        """The manifest and the verified ONNX bytes of ``ref``."""
        manifest = self.manifest(ref)
        return manifest, self.blob(manifest.model_id)

    def blob(self, model_id: str) -> bytes:
        """The ONNX bytes stored under ``model_id``, refused if they do not hash to it."""
        try:
            return self.store.get(MODELS, model_id)
        except ArtifactIntegrityError as exc:
            raise ModelIntegrityError(
                f"model blob {model_id} is corrupt or truncated: {exc}. Re-publish or restore it; "
                "it will not be loaded",
                model_id=model_id,
            ) from None
        except ArtifactError:
            raise ModelNotFoundError(
                f"model blob {model_id} is missing from the store {self.store.url}"
            ) from None

    def pull(self, ref: str | ModelRef, dest: str | Path) -> Path:
        """Write the verified ONNX bytes of ``ref`` to ``dest`` (a file or a folder)."""
        manifest, data = self.model_bytes(ref)
        dest = Path(dest)
        if dest.is_dir():
            dest = dest / f"{manifest.name}-{manifest.version}.onnx"
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(dest)
        return dest

    def verify(self, ref: str | ModelRef) -> VerifyReport:
        """Check the manifest signature and the blob hash; report every problem found."""
        entry = self.entry(ref)
        manifest = entry.manifest
        problems: list[str] = []
        signature_ok = blob_ok = True
        try:
            manifest.check_signature()
        except HubError as exc:
            signature_ok = False
            problems.append(str(exc))
        # The index could be edited; the manifest file in the store is what was signed.
        try:
            stored = json.loads(
                self.store.read_bytes(self._manifest_path(manifest.name, manifest.version))
            )
            stored_manifest = ModelManifest.from_dict(stored)
            if stored_manifest != manifest:
                signature_ok = False
                problems.append("the index entry differs from the stored manifest")
            else:
                stored_manifest.check_signature()
        except (ArtifactError, HubError, KeyError, TypeError, ValueError) as exc:
            signature_ok = False
            problems.append(f"stored manifest: {exc}")
        try:
            self.blob(manifest.model_id)
        except HubError as exc:
            blob_ok = False
            problems.append(str(exc))
        return VerifyReport(
            manifest.ref, manifest.model_id, signature_ok, blob_ok, manifest.owner, tuple(problems)
        )

    def reindex(self) -> int:
        """Rebuild the index from the manifests and deprecation records in the store.

        The store is writable by more than the names' owners (nodes put their batches in
        it), so a manifest is indexed only when it is signed by its owner, its file is
        ``manifests/<its name>/<its version>.json`` and it keeps its name's owner: the owner
        the index already knew for the name, else the owner of the name's lowest version
        found. A version signed by anyone else (someone taking over ``name`` with a higher
        version and their own key) and an unreadable file are skipped with a warning; one
        bad file never stops the rebuild."""
        known = {e.manifest.name: e.manifest.owner.lower() for e in self.index.search()}
        found: dict[str, list[ModelManifest]] = {}
        for name in self.store.listdir("manifests"):
            for file in self.store.listdir(f"manifests/{name}"):
                version = file.removesuffix(".json")
                path = self._manifest_path(name, version)
                try:
                    manifest = ModelManifest.from_dict(json.loads(self.store.read_bytes(path)))
                    manifest.check_signature()
                    SemVer.parse(manifest.version)
                except (OgkitError, KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
                    log.warning("reindex: skipping %s: %s", path, exc)
                    continue
                if (manifest.name, manifest.version) != (name, version):
                    log.warning("reindex: skipping %s: it holds %s", path, manifest.ref)
                    continue
                found.setdefault(name, []).append(manifest)
        self.index.clear()
        count = 0
        for name, manifests in found.items():
            manifests.sort(key=lambda m: SemVer.parse(m.version))
            owner = known.get(name, manifests[0].owner.lower())
            for manifest in manifests:
                if manifest.owner.lower() != owner:
                    log.warning(
                        "reindex: skipping %s: signed by %s, not by %s's owner %s",
                        manifest.ref, manifest.owner, name, owner,
                    )  # fmt: skip
                    continue
                self.index.add(manifest)
                count += 1
                self._reindex_deprecation(manifest)
        return count

    def _reindex_deprecation(self, manifest: ModelManifest) -> None:
        path = self._deprecation_path(manifest.name, manifest.version)
        if not self.store.exists(path):
            return
        try:
            doc = json.loads(self.store.read_bytes(path))
            reason = doc["typed_data"]["message"]["reason"]
            # Only the hub's own Deprecation message for this version's id counts: another
            # message the owner signed (its manifest, say) is no deprecation.
            if not isinstance(reason, str) or doc["typed_data"] != self._deprecation_record(
                manifest.model_id, reason
            ):
                raise ValueError(f"it is not a deprecation of {manifest.model_id}")
            signer = recover_typed_data(doc["typed_data"], doc["signature"])
        except (OgkitError, KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
            log.warning("reindex: skipping the deprecation %s: %s", path, exc)
            return
        if signer.lower() == manifest.owner.lower():
            self.index.set_deprecated(manifest.name, manifest.version, reason)


def _binding(manifest: ModelManifest) -> str:
    """What decides how a dataset feeds the model: the signed feature names per input."""
    return json.dumps({k: list(v) for k, v in manifest.features.items()}, sort_keys=True)


def _features(
    given: Mapping[str, Sequence[str]] | None,
    model: onnx.ModelProto,
    inputs: Sequence[TensorSpec],
    path: Path,
) -> dict[str, tuple[str, ...]]:
    """The feature names to record: given, else the model's ``ogkit.features`` metadata."""
    if given is None:
        raw = {p.key: p.value for p in model.metadata_props}.get("ogkit.features")
        if raw is None:
            return {}
        try:
            given = json.loads(raw)
            assert isinstance(given, dict)
        except (ValueError, AssertionError):
            raise InvalidModelError(
                f"{path}: metadata ogkit.features must be a JSON object of input -> columns"
            ) from None
    specs = {t.name: t for t in inputs}
    out: dict[str, tuple[str, ...]] = {}
    problems = []
    for name, cols in given.items():
        cols = (cols,) if isinstance(cols, str) else tuple(str(c) for c in cols)
        spec = specs.get(name)
        if spec is None:
            problems.append(f"{name!r} is not an input of the model ({', '.join(specs)})")
            continue
        width = spec.shape[-1] if len(spec.shape) == 2 else None
        if len(cols) > 1 and isinstance(width, int) and width != len(cols):
            problems.append(f"input {name!r} takes {width} values a row, not {len(cols)}")
        if len(set(cols)) != len(cols):
            problems.append(f"input {name!r} names a feature twice")
        out[name] = cols
    if problems:
        raise ConfigError(
            "feature names do not fit the model: "
            + "; ".join(problems)
            + " (ogkit hub publish --features INPUT=COL1,COL2,...)"
        )
    return out

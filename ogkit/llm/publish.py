"""Publishing a language model to the hub: its folder as one bundle, owner-signed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ogkit.errors import InvalidModelError
from ogkit.llm.bundle import pack_folder, unpack
from ogkit.llm.model import check_bundle

__all__ = ["LLM_TAG", "ensure_llm_published", "publish_llm"]

log = logging.getLogger(__name__)

LLM_TAG = "llm"


def publish_llm(
    hub: Any,
    folder: str | Path,
    *,
    name: str,
    version: str,
    price: int,
    signer: Any,
    description: str = "",
    tags: Sequence[str] = (),
    license: str = "",
    before_write: Callable[[Any], object] | None = None,
) -> Any:
    """Bundle the onnxruntime-genai ``folder`` (docs/spec.md §12.1), check it (config,
    tokenizer, chat template, a valid ONNX decoder) and publish it as ``name@version``;
    the model id is keccak256 of the bundle. Returns the signed
    :class:`~ogkit.hub.manifest.ModelManifest` (tagged ``llm``)."""
    from ogkit.hub.manifest import extract_signature
    from ogkit.llm.template import ChatTemplate

    data = pack_folder(folder)
    files = unpack(data)
    config = check_bundle(files)
    import json

    ChatTemplate.from_tokenizer_config(json.loads(files["tokenizer_config.json"]))
    onnx_name = config["model"]["decoder"]["filename"]
    import onnx

    try:
        model = onnx.load_model_from_string(files[onnx_name])
        inputs, outputs = extract_signature(model)
    except Exception as exc:
        raise InvalidModelError(f"{folder}/{onnx_name} is not a valid ONNX model: {exc}") from None
    manifest = hub.publish_blob(
        data,
        name=name,
        version=version,
        price=price,
        signer=signer,
        inputs=inputs,
        outputs=outputs,
        description=description,
        tags=sorted({LLM_TAG, "chat", *tags}),
        license=license,
        before_write=before_write,
    )
    log.info(
        "published language model %s as %s (%d bytes)", manifest.ref, manifest.model_id, len(data)
    )
    return manifest


def ensure_llm_published(
    hub: Any, folder: str | Path, *, name: str, version: str, price: int, signer: Any
) -> Any:
    """``name@version`` from the hub if it already holds exactly this folder's bundle,
    else :func:`publish_llm` it (a version holding other bytes stays an error: versions
    are immutable)."""
    from ogkit.errors import ModelNotFoundError, VersionError
    from ogkit.store import content_id

    try:
        manifest = hub.manifest(f"{name}@{version}")
    except ModelNotFoundError:
        return publish_llm(hub, folder, name=name, version=version, price=price, signer=signer)
    if manifest.model_id != content_id(pack_folder(folder)):
        raise VersionError(
            f"{manifest.ref} is already published with other bytes ({manifest.model_id}); "
            "publish a greater version"
        )
    return manifest

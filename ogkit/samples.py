"""Sample data generators and the paths of the shipped sample models and datasets.

Everything here is deterministic: a generator called twice with the same ``seed``
returns identical data, so the demo, the tests and the benchmarks all see the same
rows, and ``data/make_samples.py`` rewrites byte-identical files.

The *problem* (class centres, image templates) is fixed in code; the seed only picks
which samples are drawn from it. That is what lets a model trained on one seed be
evaluated on another.

Shipped files (see ``data/README.md``)::

    sample_model_path("tabular")     data/models/tabular.onnx
        features float32[N,8] -> label int64[N], probabilities float32[N,3]
    sample_model_path("cnn")         data/models/cnn.onnx
        image float32[batch,1,28,28] -> probabilities float32[batch,10]
    sample_model_path("cnn_b1")      data/models/cnn_b1.onnx (same CNN, batch fixed to 1)
        image float32[1,1,28,28] -> probabilities float32[1,10]
    sample_data_path("tabular")      data/samples/tabular.parquet  make_tabular(2_000, seed=2)
    sample_data_path("images")       data/samples/images.parquet   make_image_frame(256, seed=2)
    sample_data_path("tabular_csv")  data/samples/tabular.csv      its first 500 rows
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import polars as pl

from ogkit.errors import ConfigError

__all__ = [
    "DATA_DIR",
    "IMAGE_CLASSES",
    "IMAGE_COLUMN",
    "IMAGE_DTYPE",
    "IMAGE_SHAPE",
    "TABULAR_CLASSES",
    "TABULAR_FEATURES",
    "data_dir",
    "make_image_frame",
    "make_image_labels",
    "make_images",
    "make_tabular",
    "sample_data_path",
    "sample_model_path",
]

logger = logging.getLogger(__name__)

_ENV_VAR = "OGKIT_DATA_DIR"
# The package is installed editable from the repository, so data/ sits next to ogkit/.
_DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent / "data"

_MODEL_FILES: dict[str, str] = {
    "tabular": "models/tabular.onnx",
    "cnn": "models/cnn.onnx",
    "cnn_b1": "models/cnn_b1.onnx",
}
_DATA_FILES: dict[str, str] = {
    "tabular": "samples/tabular.parquet",
    "images": "samples/images.parquet",
    "tabular_csv": "samples/tabular.csv",
}

TABULAR_FEATURES: tuple[str, ...] = tuple(f"f{i}" for i in range(8))
TABULAR_CLASSES = 3
IMAGE_SHAPE: tuple[int, int, int] = (1, 28, 28)
IMAGE_CLASSES = 10
IMAGE_COLUMN = "image"
# Images are stored one per row as a fixed-size array, so the width is part of the schema.
IMAGE_DTYPE = pl.Array(pl.Float32, 28 * 28)


def data_dir() -> Path:
    """The sample data folder: ``$OGKIT_DATA_DIR`` if set, else the repository's ``data/``.

    Read on every call (unlike :data:`DATA_DIR`) so a test can point it elsewhere.
    """
    override = os.environ.get(_ENV_VAR)
    return Path(override).expanduser().resolve() if override else _DEFAULT_DATA_DIR


DATA_DIR: Path = data_dir()
"""The data folder as resolved at import time; see :func:`data_dir`."""


def _resolve(kind: str, table: dict[str, str], name: str, must_exist: bool) -> Path:
    if name not in table:
        known = ", ".join(repr(k) for k in table)
        raise ConfigError(f"unknown sample {kind} {name!r}; known {kind}s: {known}")
    path = data_dir() / table[name]
    if must_exist and not path.is_file():
        raise ConfigError(
            f"sample {kind} {name!r} not found at {path}; "
            f"regenerate it with `python data/make_samples.py` or set {_ENV_VAR}"
        )
    return path


def sample_model_path(name: str, *, must_exist: bool = True) -> Path:
    """Path of a shipped sample model: ``"tabular"``, ``"cnn"`` or ``"cnn_b1"``.

    Raises :class:`~ogkit.errors.ConfigError` for an unknown name, or (unless
    ``must_exist=False``) when the file has not been generated.
    """
    return _resolve("model", _MODEL_FILES, name, must_exist)


def sample_data_path(name: str, *, must_exist: bool = True) -> Path:
    """Path of a shipped sample dataset: ``"tabular"``, ``"images"`` or ``"tabular_csv"``."""
    return _resolve("dataset", _DATA_FILES, name, must_exist)


def _check_n_rows(n_rows: int) -> None:
    if isinstance(n_rows, bool) or not isinstance(n_rows, int | np.integer) or n_rows < 0:
        raise ConfigError(f"n_rows must be a non-negative integer, got {n_rows!r}")


# --- tabular -------------------------------------------------------------------------

# Class centres of the six "linear" features. They overlap under the noise on purpose,
# so a linear model alone is decent but not perfect.
_TAB_CENTRES = np.array(
    [
        [0.0, 1.0, -1.0, 0.5, 0.0, -0.5],
        [1.0, -0.5, 0.0, -0.5, 1.0, 0.0],
        [-1.0, 0.0, 1.0, 0.0, -0.5, 1.0],
    ],
    dtype=np.float32,
)
_TAB_NOISE = np.float32(1.1)
# Radius of a ring per class in the (f6, f7) plane: informative only to a nonlinear model.
_TAB_RADII = np.array([1.0, 2.0, 3.0], dtype=np.float32)
_TAB_RING_NOISE = np.float32(0.35)


def make_tabular(n_rows: int, seed: int = 0) -> pl.DataFrame:
    """A synthetic 3-class tabular problem.

    Columns ``f0``..``f7`` are float32 and ``label`` (int64) is the true class.
    ``f0``..``f5`` are a class centre plus Gaussian noise; ``f6``, ``f7`` lie on a
    class-specific ring at a uniform random angle, which only a nonlinear model
    (or one given ``f6**2 + f7**2``) can exploit. Vectorised: 1M rows take well under
    a second.
    """
    _check_n_rows(n_rows)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, TABULAR_CLASSES, size=n_rows, dtype=np.int64)
    # Feature-major layout so each column is contiguous when handed to polars.
    x = rng.standard_normal((8, n_rows), dtype=np.float32)
    x[:6] *= _TAB_NOISE
    x[:6] += _TAB_CENTRES[labels].T
    angle = rng.uniform(0.0, 2.0 * np.pi, size=n_rows).astype(np.float32)
    radius = _TAB_RADII[labels] + _TAB_RING_NOISE * x[6]
    x[6] = radius * np.cos(angle) + _TAB_RING_NOISE * x[7]
    x[7] = radius * np.sin(angle) + _TAB_RING_NOISE * rng.standard_normal(n_rows, dtype=np.float32)
    columns: dict[str, np.ndarray] = {name: x[i] for i, name in enumerate(TABULAR_FEATURES)}
    columns["label"] = labels
    return pl.DataFrame(columns)


# --- images --------------------------------------------------------------------------

_PATCH = 20  # templates are drawn on a 20x20 patch and placed at a random offset in 28x28


def _templates() -> np.ndarray:
    """Ten 20x20 stroke templates in [0, 1], one per class."""
    yy, xx = np.mgrid[0:_PATCH, 0:_PATCH].astype(np.float32)
    c = (_PATCH - 1) / 2.0
    dy, dx = yy - c, xx - c
    r = np.hypot(dy, dx)
    half = 1.2  # half stroke width, in pixels

    def band(d: np.ndarray) -> np.ndarray:
        # Soft-edged stroke: 1 on the line, fading to 0 about a pixel beyond `half`.
        return np.clip(half + 1.0 - np.abs(d), 0.0, 1.0)

    box = (np.abs(dy) <= 8) & (np.abs(dx) <= 8)
    shapes = [
        band(r - 7.0),  # 0: ring
        band(dx) * (np.abs(dy) <= 8),  # 1: vertical bar
        band(dy) * (np.abs(dx) <= 8),  # 2: horizontal bar
        band((dy - dx) / np.sqrt(2)) * box,  # 3: diagonal "\"
        band((dy + dx) / np.sqrt(2)) * box,  # 4: diagonal "/"
        np.maximum(band(dx), band(dy)) * box,  # 5: plus
        np.maximum(band((dy - dx) / np.sqrt(2)), band((dy + dx) / np.sqrt(2))) * box,  # 6: X
        band(np.maximum(np.abs(dy), np.abs(dx)) - 7.0),  # 7: square outline
        np.clip(5.5 - r, 0.0, 1.0),  # 8: filled disc
        np.maximum(band(dy + 7.0) * (np.abs(dx) <= 8), band(dx) * (dy >= -8) * (dy <= 8)),  # 9: T
    ]
    return np.stack(shapes).astype(np.float32)


_TEMPLATES = _templates()
_IMG_NOISE = np.float32(0.12)


def make_images(n_rows: int, seed: int = 0) -> np.ndarray:
    """Synthetic "digit-like" images, float32 of shape ``(n_rows, 1, 28, 28)`` in [0, 1].

    Each image is one of ten stroke shapes (ring, bars, diagonals, plus, X, square,
    disc, T) at a random offset of up to 8 pixels, with random contrast and Gaussian
    noise, quantised to 8-bit levels (k/255) like a real scanned image. The class of
    image ``i`` is ``make_image_labels(n_rows, seed)[i]``; :func:`make_image_frame`
    returns both together.
    """
    images, _ = _images_and_labels(n_rows, seed)
    return images


def _images_and_labels(n_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    _check_n_rows(n_rows)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, IMAGE_CLASSES, size=n_rows, dtype=np.int64)
    span = IMAGE_SHAPE[1] - _PATCH + 1
    oy = rng.integers(0, span, size=n_rows)
    ox = rng.integers(0, span, size=n_rows)
    contrast = rng.uniform(0.6, 1.0, size=n_rows).astype(np.float32)
    out = rng.standard_normal((n_rows, 28, 28), dtype=np.float32)
    out *= _IMG_NOISE
    # Fancy-indexed paste of every patch at its own offset in one vectorised step.
    ar = np.arange(_PATCH)
    rows = oy[:, None, None] + ar[None, :, None]
    cols = ox[:, None, None] + ar[None, None, :]
    idx = np.arange(n_rows)[:, None, None]
    out[idx, rows, cols] += _TEMPLATES[labels] * contrast[:, None, None]
    np.clip(out, 0.0, 1.0, out=out)
    # 8-bit quantisation: realistic, and it makes the parquet sample compress well.
    out = np.round(out * 255.0) / np.float32(255.0)
    return out.astype(np.float32, copy=False).reshape(n_rows, *IMAGE_SHAPE), labels


def make_image_labels(n_rows: int, seed: int = 0) -> np.ndarray:
    """The int64 class of each image :func:`make_images` returns for the same arguments."""
    return _images_and_labels(n_rows, seed)[1]


def make_image_frame(n_rows: int, seed: int = 0) -> pl.DataFrame:
    """:func:`make_images` as a frame: ``image`` is ``pl.Array(pl.Float32, 784)`` (row-major
    28x28, one image per row; reshape to ``(-1, 1, 28, 28)`` for the CNN) and ``label``
    is the int64 true class."""
    images, labels = _images_and_labels(n_rows, seed)
    flat = images.reshape(n_rows, 28 * 28)
    return pl.DataFrame(
        [
            pl.Series(IMAGE_COLUMN, flat, dtype=IMAGE_DTYPE),
            pl.Series("label", labels, dtype=pl.Int64),
        ]
    )

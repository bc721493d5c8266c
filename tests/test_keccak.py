"""keccak256 and the numba row kernel agree with two independent implementations."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import _pysha3
import numpy as np
import pytest
from eth_utils import keccak as eth_keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from ogkit.crypto import keccak as kmod
from ogkit.crypto import keccak256, keccak256_rows, numba_enabled, warm_up
from ogkit.crypto.keccak import keccak256_words
from ogkit.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
LENGTHS = [0, 1, 7, 8, 31, 32, 64, 135, 136, 137, 192, 271, 272, 273, 1000]


@pytest.fixture(params=["numba", "python"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test once through the numba kernel and once through the Python fallback."""
    if request.param == "python":
        monkeypatch.setenv("OGKIT_NO_NUMBA", "1")
        assert not numba_enabled()
    else:
        monkeypatch.delenv("OGKIT_NO_NUMBA", raising=False)
        if not numba_enabled():
            pytest.skip("numba is not importable here")
    return request.param


def _reference(messages: np.ndarray) -> list[bytes]:
    return [_pysha3.keccak_256(row.tobytes()).digest() for row in messages]


def test_known_vectors() -> None:
    # Ethereum's keccak256, not FIPS 202 SHA3-256 (which gives a7ffc6f8... for b"")
    assert keccak256(b"").hex() == (
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )
    assert keccak256(b"abc").hex() == (
        "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
    )


def test_derived_constants_match_fips202() -> None:
    rc = kmod._RC
    assert rc.dtype == np.uint64 and rc.shape == (24,)
    assert [int(x) for x in rc[:4]] == [0x1, 0x8082, 0x800000000000808A, 0x8000000080008000]
    assert int(rc[23]) == 0x8000000080008008
    r = kmod._rotation_offsets()
    assert len(r) == 25 and len(set(r.values())) == 25
    assert (r[(1, 0)], r[(0, 1)], r[(1, 1)], r[(4, 4)], r[(2, 4)]) == (1, 36, 44, 14, 61)


@pytest.mark.parametrize("length", LENGTHS)
def test_single_matches_eth_utils(length: int) -> None:
    data = np.random.default_rng(length).bytes(length)
    assert keccak256(data) == eth_keccak(data) == _pysha3.keccak_256(data).digest()


@pytest.mark.parametrize("length", LENGTHS)
def test_rows_match_references(path: str, length: int) -> None:
    rng = np.random.default_rng(1000 + length)
    messages = rng.integers(0, 256, size=(9, length), dtype=np.uint8)
    out = keccak256_rows(messages)
    assert out.dtype == np.uint8 and out.shape == (9, 32)
    got = [row.tobytes() for row in out]
    assert got == _reference(messages)
    assert got == [eth_keccak(row.tobytes()) for row in messages]


def test_rows_edge_shapes(path: str) -> None:
    assert keccak256_rows(np.zeros((0, 5), dtype=np.uint8)).shape == (0, 32)
    base = np.random.default_rng(7).integers(0, 256, size=(6, 300), dtype=np.uint8)
    strided = base[::2, 10:150]  # not C-contiguous
    assert [r.tobytes() for r in keccak256_rows(strided)] == _reference(strided)
    readonly = base.copy()
    readonly.flags.writeable = False
    assert [r.tobytes() for r in keccak256_rows(readonly)] == _reference(readonly)


@pytest.mark.parametrize(
    "bad",
    [np.zeros(5, np.uint8), np.zeros((2, 3), np.int8), [[1, 2]], np.zeros((1, 1, 1), np.uint8)],
)
def test_rows_rejects_bad_input(bad: object) -> None:
    with pytest.raises(ConfigError):
        keccak256_rows(bad)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    length=st.integers(min_value=0, max_value=420),
    count=st.integers(min_value=1, max_value=4),
    data=st.data(),
)
def test_rows_property(length: int, count: int, data: st.DataObject) -> None:
    rows = [data.draw(st.binary(min_size=length, max_size=length)) for _ in range(count)]
    messages = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(count, length)
    got = [r.tobytes() for r in keccak256_rows(messages)]
    assert got == [keccak256(r) for r in rows]
    assert got == [eth_keccak(r) for r in rows]


def test_warm_up_returns_seconds() -> None:
    warm_up()  # compiles the kernel, or loads it from the cache
    assert warm_up() < 5.0  # second call: already compiled


def _run_python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


CHECK = (
    "import numpy as np, _pysha3, {mod} as k\n"
    "m = np.arange(3 * 150, dtype=np.uint8).reshape(3, 150)\n"
    "assert [r.tobytes() for r in k.keccak256_rows(m)] == "
    "[_pysha3.keccak_256(r.tobytes()).digest() for r in m]\n"
    "print('numba' if k.numba_enabled() else 'python')\n"
)


def test_fallback_when_numba_missing(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("OGKIT_NO_NUMBA", None)
    code = "import sys; sys.modules['numba'] = None\n" + CHECK.format(mod="ogkit.crypto.keccak")
    proc = _run_python(code, env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "python"


@pytest.mark.skipif(not kmod._HAVE_NUMBA, reason="numba is not importable here")
def test_compiles_when_no_cache_dir_is_writable(tmp_path: Path) -> None:
    """numba raises at decoration time when no cache locator works; we must not.

    Running as root, permissions cannot make a dir read-only, so every location numba
    tries is made impossible instead: ``__pycache__`` is a file, and the user-provided and
    user-wide cache dirs lie under a file.
    """
    moddir = tmp_path / "mod"
    moddir.mkdir()
    shutil.copy(REPO / "ogkit" / "crypto" / "keccak.py", moddir / "kcopy.py")
    (moddir / "__pycache__").write_text("not a directory")
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    env = {
        **os.environ,
        "PYTHONPATH": f"{moddir}{os.pathsep}{REPO}",
        "PYTHONDONTWRITEBYTECODE": "1",
        "NUMBA_CACHE_DIR": str(blocker / "numba"),
        "XDG_CACHE_HOME": str(blocker / "xdg"),
        "HOME": str(blocker),
    }
    env.pop("OGKIT_NO_NUMBA", None)
    proc = _run_python(CHECK.format(mod="kcopy"), env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "numba"


@pytest.mark.skipif(not kmod._HAVE_NUMBA, reason="numba is not importable here")
def test_cache_write_failure_recompiles(monkeypatch: pytest.MonkeyPatch) -> None:
    """An OSError from the kernel's first call (cache dir gone read-only) triggers a rebuild."""
    monkeypatch.delenv("OGKIT_NO_NUMBA", raising=False)
    kmod.warm_up()  # numba imported and the kernels wrapped (done on first use)
    real_kernel = kmod._rows_kernel

    def failing(*_args: object) -> np.ndarray:
        raise PermissionError("read-only cache dir")

    rebuilt: list[bool] = []

    def fake_rebuild() -> None:  # the real one recompiles for seconds; restore instead
        rebuilt.append(True)
        monkeypatch.setattr(kmod, "_rows_kernel", real_kernel)

    monkeypatch.setattr(kmod, "_rows_kernel", failing)
    monkeypatch.setattr(kmod, "_rebuild_uncached", fake_rebuild)
    m = np.ones((2, 10), dtype=np.uint8)
    assert [r.tobytes() for r in keccak256_rows(m)] == _reference(m)
    assert rebuilt == [True]


def test_threads_share_the_kernel(path: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(9)
    chunks = [rng.integers(0, 256, size=(50, 100), dtype=np.uint8) for _ in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(keccak256_rows, chunks))
    for chunk, out in zip(chunks, results, strict=True):
        assert [r.tobytes() for r in out] == _reference(chunk)


@pytest.mark.parametrize("length", [0, 1, 31, 32, 33, 64, 135, 136, 137, 192, 272, 300])
def test_rows_twice_is_keccak_of_keccak(path: str, length: int) -> None:
    """The fused leaf kernel gives keccak256(keccak256(row)), byte for byte."""
    rng = np.random.default_rng(length)
    rows = rng.integers(0, 256, size=(17, length), dtype=np.uint8)
    got = kmod.keccak256_rows_twice(rows)
    assert got.shape == (17, 32)
    for i in range(17):
        assert got[i].tobytes() == eth_keccak(eth_keccak(rows[i].tobytes()))
    assert kmod.keccak256_rows_twice(rows[:0]).shape == (0, 32)
    assert np.array_equal(
        kmod.keccak256_rows_twice(rows[:, ::-1]),
        kmod.keccak256_rows_twice(np.ascontiguousarray(rows[:, ::-1])),
    )


def test_sorted_pairs_is_oz_hash_pair(path: str) -> None:
    """Each pair is hashed smaller node first (bytewise), ties and late differences too."""
    rng = np.random.default_rng(3)
    pairs = rng.integers(0, 256, size=(300, 64), dtype=np.uint8)
    pairs[:100, :31] = pairs[:100, 32:63]  # nodes that differ only in the last byte
    pairs[100:120, 32:] = pairs[100:120, :32]  # equal nodes
    out = np.full((300, 32), 7, dtype=np.uint8)
    assert kmod.keccak256_sorted_pairs(pairs, out=out) is out
    for i in range(300):
        a, b = pairs[i, :32].tobytes(), pairs[i, 32:].tobytes()
        assert out[i].tobytes() == eth_keccak(min(a, b) + max(a, b))
    with pytest.raises(ConfigError):
        kmod.keccak256_sorted_pairs(pairs[:, :63])


@pytest.mark.parametrize("n", [1, 7, 8, 9, 61])
def test_words_hash_the_concatenated_words(n: int) -> None:
    """keccak256_words hashes each row's words where they live; the bytes are those of
    keccak256_rows over the built messages (and of the C library), for every word kind."""
    rng = np.random.default_rng(n)
    tag = bytes(rng.integers(0, 256, 32, dtype=np.uint8))
    idx = rng.integers(0, 2**63, n).astype(np.uint64)
    a, b, c = (rng.integers(0, 256, (n, 32), dtype=np.uint8) for _ in range(3))
    be = np.zeros((n, 32), dtype=np.uint8)
    be[:, 24:] = idx.astype(">u8").view(np.uint8).reshape(n, 8)
    const = np.tile(np.frombuffer(tag, dtype=np.uint8), (n, 1))
    for words, parts in (
        ([idx, a, b], [be, a, b]),
        ([tag, idx, a], [const, be, a]),
        ([a], [a]),
        ([a, b, c, tag], [a, b, c, const]),
        ([a[:, ::-1], idx], [a[:, ::-1], be]),  # a non-contiguous column
    ):
        want = np.concatenate(parts, axis=1)
        got = keccak256_words(words)
        assert np.array_equal(got, keccak256_rows(want))
        assert [r.tobytes() for r in got] == _reference(want)


@pytest.mark.parametrize(
    "words",
    [
        [],
        [b"short"],
        [b"\0" * 32],  # no per-row word
        [np.zeros((3, 31), dtype=np.uint8)],
        [np.zeros(3, dtype=np.int64)],  # a signed index
        [np.zeros((3, 32), dtype=np.uint8), np.zeros((4, 32), dtype=np.uint8)],
        [np.zeros((2, 32), dtype=np.uint8)] * 5,
    ],
)
def test_words_reject_bad_input(words: list) -> None:
    with pytest.raises(ConfigError):
        keccak256_words(words)

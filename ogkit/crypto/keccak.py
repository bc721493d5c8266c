"""Ethereum keccak256, one message at a time or many equal-length messages at once.

Ethereum's ``keccak256`` is the original Keccak submission (pad ``0x01 … 0x80``),
*not* FIPS 202 SHA3-256 (pad ``0x06 … 0x80``), so :mod:`hashlib` cannot be used.

* :func:`keccak256` hashes one message with a C implementation (safe-pysha3, else
  pycryptodome).
* :func:`keccak256_rows` hashes every row of an ``(n, L)`` uint8 array. Its kernel is
  Keccak-f[1600] and the sponge written here in numba, eight messages in lockstep so the
  rounds compile to SIMD instructions: millions of short messages (leaves, tree nodes,
  tensor rows) hash without a Python call per message. Without
  numba, or with ``OGKIT_NO_NUMBA=1``, it loops over :func:`keccak256` instead.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ogkit.errors import ConfigError

__all__ = [
    "RATE",
    "keccak256",
    "keccak256_rows",
    "keccak256_rows_twice",
    "keccak256_sorted_pairs",
    "keccak256_words",
    "numba_enabled",
    "warm_up",
]

log = logging.getLogger(__name__)

#: Sponge rate of keccak256 in bytes: 1600-bit state minus a 512-bit capacity.
RATE = 136
_RATE_LANES = RATE // 8
_DIGEST_LANES = 4  # 32-byte digest = the first four little-endian lanes of the state

# --------------------------------------------------------------------------------------
# Single-message hashing: a C implementation; the first one that imports wins.
# --------------------------------------------------------------------------------------

try:
    from _pysha3 import keccak_256 as _keccak_256  # safe-pysha3

    def keccak256(data: bytes) -> bytes:
        """Ethereum keccak256 of ``data`` (32 bytes)."""
        return _keccak_256(data).digest()

except ImportError:  # pragma: no cover - depends on the environment
    from Crypto.Hash import keccak as _pycryptodome_keccak

    def keccak256(data: bytes) -> bytes:
        """Ethereum keccak256 of ``data`` (32 bytes)."""
        return _pycryptodome_keccak.new(digest_bits=256, data=bytes(data)).digest()


# --------------------------------------------------------------------------------------
# Keccak-f[1600] constants, derived from the FIPS 202 definitions rather than typed in.
# --------------------------------------------------------------------------------------


def _round_constants() -> np.ndarray:
    """The 24 iota constants: RC[i] bit 2^j - 1 = rc(j + 7i), rc() the degree-8 LFSR."""

    def rc(t: int) -> int:
        if t % 255 == 0:
            return 1
        r = 0x01  # R = 10000000 in FIPS 202's bit order, i.e. bit 0 set
        for _ in range(t % 255):
            r <<= 1
            if r & 0x100:  # x^8 term: reduce by x^8 + x^6 + x^5 + x^4 + 1
                r ^= 0x171
        return r & 1

    out = []
    for i in range(24):
        value = 0
        for j in range(7):
            if rc(j + 7 * i):
                value |= 1 << ((1 << j) - 1)
        out.append(value)
    return np.array(out, dtype=np.uint64)


def _rotation_offsets() -> dict[tuple[int, int], int]:
    """rho offsets r[x, y] (FIPS 202 Algorithm 2); the unrolled round below uses these."""
    offsets = {(0, 0): 0}
    x, y = 1, 0
    for t in range(24):
        offsets[(x, y)] = ((t + 1) * (t + 2) // 2) % 64
        x, y = y, (2 * x + 3 * y) % 5
    return offsets


_RC = _round_constants()

# --------------------------------------------------------------------------------------
# numba kernel: eight messages in lockstep
# --------------------------------------------------------------------------------------
#
# The state of ``_WIDTH`` messages lives in one flat uint64 array, lane (x, y) of message
# j at ``st[(x + 5 * y) * _WIDTH + j]``. Every step of a round is the same operation on
# the ``_WIDTH`` copies of a lane, so the loop over j inside each round compiles to SIMD
# instructions (AVX2 / AVX-512: four or eight lanes a register, rotations as one
# ``vprolq``); with the width a compile-time constant LLVM sees that the copies never
# overlap. One permutation costs about a sixth of the one-message kernel this replaced
# (bench/README.md). A group that is not full hashes zero rows in the spare slots and
# drops their digests.

# numba is imported when a kernel is first needed (:func:`numba_enabled`), not with this
# module: the import costs about 0.15 s, which every command that hashes no rows saves.
_HAVE_NUMBA = importlib.util.find_spec("numba") is not None
numba: Any = None
_load_lock = threading.Lock()
_loaded = False

_WIDTH = 8  # messages hashed in lockstep


def _jit(fn: Callable[..., Any], *, cache: bool = True, **kwargs: Any) -> Any:
    """``numba.njit`` that falls back to an in-memory compile when no cache dir is usable.

    numba raises RuntimeError at decoration time when neither ``__pycache__`` next to
    this file nor the user-wide cache dir is writable (read-only installs, containers).
    """
    try:
        return numba.njit(nogil=True, cache=cache, **kwargs)(fn)
    except (RuntimeError, OSError) as exc:
        log.info("numba cache unavailable for %s (%s); compiling without cache", fn, exc)
        return numba.njit(nogil=True, cache=False, **kwargs)(fn)


def _rol_py(x: np.uint64, n: int) -> np.uint64:
    # n is always a literal in 1..63 (rotation by 0 would shift by 64: undefined in LLVM)
    return (x << np.uint64(n)) | (x >> np.uint64(64 - n))


def _keccak_f_py(st: np.ndarray) -> None:
    """Keccak-f[1600] on ``_WIDTH`` states at once, in place (layout above).

    Per message the lanes are loaded into local scalars (``aXY``), one round is computed
    with the rho offsets of :func:`_rotation_offsets` inlined, and stored back; the loop
    over messages is the one that vectorises.
    """
    w = _WIDTH
    rc = _RC
    for rnd in range(24):
        r = rc[rnd]
        for j in range(w):
            a00, a10, a20, a30, a40 = st[j], st[w + j], st[2 * w + j], st[3 * w + j], st[4 * w + j]
            a01, a11, a21 = st[5 * w + j], st[6 * w + j], st[7 * w + j]
            a31, a41 = st[8 * w + j], st[9 * w + j]
            a02, a12, a22 = st[10 * w + j], st[11 * w + j], st[12 * w + j]
            a32, a42 = st[13 * w + j], st[14 * w + j]
            a03, a13, a23 = st[15 * w + j], st[16 * w + j], st[17 * w + j]
            a33, a43 = st[18 * w + j], st[19 * w + j]
            a04, a14, a24 = st[20 * w + j], st[21 * w + j], st[22 * w + j]
            a34, a44 = st[23 * w + j], st[24 * w + j]
            # theta: xor each lane with the parities of two neighbouring columns
            c0 = a00 ^ a01 ^ a02 ^ a03 ^ a04
            c1 = a10 ^ a11 ^ a12 ^ a13 ^ a14
            c2 = a20 ^ a21 ^ a22 ^ a23 ^ a24
            c3 = a30 ^ a31 ^ a32 ^ a33 ^ a34
            c4 = a40 ^ a41 ^ a42 ^ a43 ^ a44
            d0 = c4 ^ _rol(c1, 1)
            d1 = c0 ^ _rol(c2, 1)
            d2 = c1 ^ _rol(c3, 1)
            d3 = c2 ^ _rol(c4, 1)
            d4 = c3 ^ _rol(c0, 1)
            # rho + pi: B[y, 2x + 3y] = rot(A[x, y] ^ D[x], r[x, y])
            b00 = a00 ^ d0
            b13 = _rol(a01 ^ d0, 36)
            b21 = _rol(a02 ^ d0, 3)
            b34 = _rol(a03 ^ d0, 41)
            b42 = _rol(a04 ^ d0, 18)
            b02 = _rol(a10 ^ d1, 1)
            b10 = _rol(a11 ^ d1, 44)
            b23 = _rol(a12 ^ d1, 10)
            b31 = _rol(a13 ^ d1, 45)
            b44 = _rol(a14 ^ d1, 2)
            b04 = _rol(a20 ^ d2, 62)
            b12 = _rol(a21 ^ d2, 6)
            b20 = _rol(a22 ^ d2, 43)
            b33 = _rol(a23 ^ d2, 15)
            b41 = _rol(a24 ^ d2, 61)
            b01 = _rol(a30 ^ d3, 28)
            b14 = _rol(a31 ^ d3, 55)
            b22 = _rol(a32 ^ d3, 25)
            b30 = _rol(a33 ^ d3, 21)
            b43 = _rol(a34 ^ d3, 56)
            b03 = _rol(a40 ^ d4, 27)
            b11 = _rol(a41 ^ d4, 20)
            b24 = _rol(a42 ^ d4, 39)
            b32 = _rol(a43 ^ d4, 8)
            b40 = _rol(a44 ^ d4, 14)
            # chi: A[x, y] = B[x, y] ^ (~B[x + 1, y] & B[x + 2, y]); iota on lane (0, 0)
            st[j] = b00 ^ (~b10 & b20) ^ r
            st[w + j] = b10 ^ (~b20 & b30)
            st[2 * w + j] = b20 ^ (~b30 & b40)
            st[3 * w + j] = b30 ^ (~b40 & b00)
            st[4 * w + j] = b40 ^ (~b00 & b10)
            st[5 * w + j] = b01 ^ (~b11 & b21)
            st[6 * w + j] = b11 ^ (~b21 & b31)
            st[7 * w + j] = b21 ^ (~b31 & b41)
            st[8 * w + j] = b31 ^ (~b41 & b01)
            st[9 * w + j] = b41 ^ (~b01 & b11)
            st[10 * w + j] = b02 ^ (~b12 & b22)
            st[11 * w + j] = b12 ^ (~b22 & b32)
            st[12 * w + j] = b22 ^ (~b32 & b42)
            st[13 * w + j] = b32 ^ (~b42 & b02)
            st[14 * w + j] = b42 ^ (~b02 & b12)
            st[15 * w + j] = b03 ^ (~b13 & b23)
            st[16 * w + j] = b13 ^ (~b23 & b33)
            st[17 * w + j] = b23 ^ (~b33 & b43)
            st[18 * w + j] = b33 ^ (~b43 & b03)
            st[19 * w + j] = b43 ^ (~b03 & b13)
            st[20 * w + j] = b04 ^ (~b14 & b24)
            st[21 * w + j] = b14 ^ (~b24 & b34)
            st[22 * w + j] = b24 ^ (~b34 & b44)
            st[23 * w + j] = b34 ^ (~b44 & b04)
            st[24 * w + j] = b44 ^ (~b04 & b14)


def _word_py(row: np.ndarray, pos: int, length: int) -> np.uint64:
    """The little-endian uint64 at byte ``pos`` of ``row``, zero past ``length``: one
    unaligned load for a whole word (LLVM combines the eight byte loads)."""
    if pos + 8 <= length:
        return (
            np.uint64(row[pos])
            | (np.uint64(row[pos + 1]) << np.uint64(8))
            | (np.uint64(row[pos + 2]) << np.uint64(16))
            | (np.uint64(row[pos + 3]) << np.uint64(24))
            | (np.uint64(row[pos + 4]) << np.uint64(32))
            | (np.uint64(row[pos + 5]) << np.uint64(40))
            | (np.uint64(row[pos + 6]) << np.uint64(48))
            | (np.uint64(row[pos + 7]) << np.uint64(56))
        )
    v = np.uint64(0)
    for t in range(length - pos):
        v |= np.uint64(row[pos + t]) << np.uint64(8 * t)
    return v


def _rows_kernel_py(messages: np.ndarray, twice: bool) -> np.ndarray:
    """Sponge over each row of a C-contiguous (n, L) uint8 array -> (n, 4) uint64
    digests; with ``twice``, keccak256 of each digest again (an OpenZeppelin leaf) before
    it leaves the state. Lanes are read as little-endian words; the wrapper only calls
    this on little-endian hosts."""
    w = _WIDTH
    n, length = messages.shape
    out = np.empty((n, _DIGEST_LANES), dtype=np.uint64)
    st = np.zeros(25 * w, dtype=np.uint64)
    n_full = length // RATE
    tail = length - n_full * RATE  # the last block holds tail bytes, then the padding
    for g in range(0, n, w):
        m = min(w, n - g)
        st[:] = 0
        for b in range(n_full + 1):
            base = b * RATE
            for j in range(m):
                row = messages[g + j]
                for k in range(_RATE_LANES):
                    pos = base + 8 * k
                    if pos >= length:
                        break
                    st[k * w + j] ^= _word(row, pos, length)
            if b == n_full:  # Keccak's pad10*1 with domain byte 0x01
                for j in range(w):
                    st[(tail // 8) * w + j] ^= np.uint64(0x01) << np.uint64(8 * (tail % 8))
                    st[(_RATE_LANES - 1) * w + j] ^= np.uint64(0x80) << np.uint64(56)
            _keccak_f(st)
        if twice:
            # a 32-byte message is one block: four lanes, pad 0x01 at byte 32, 0x80 at 135
            st[_DIGEST_LANES * w :] = 0
            for j in range(w):
                st[4 * w + j] = np.uint64(0x01)
                st[(_RATE_LANES - 1) * w + j] = np.uint64(0x80) << np.uint64(56)
            _keccak_f(st)
        for j in range(m):
            for k in range(_DIGEST_LANES):
                out[g + j, k] = st[k * w + j]
    return out


def _sorted_pairs_kernel_py(pairs: np.ndarray, out: np.ndarray) -> None:
    """OpenZeppelin ``hashPair`` of each row of an ``(m, 64)`` uint8 array (two 32-byte
    nodes): keccak256 of the smaller node (bytewise) followed by the larger, into the
    ``(m, 32)`` uint8 ``out``. A 64-byte message is one block."""
    w = _WIDTH
    m = pairs.shape[0]
    words = pairs.view(np.uint64)  # (m, 8) native lanes: the bytes in message order
    digest = out.view(np.uint64)
    st = np.zeros(25 * w, dtype=np.uint64)
    for g in range(0, m, w):
        c = min(w, m - g)
        st[:] = 0
        for j in range(c):
            i = g + j
            swap = False
            for b in range(32):
                x, y = pairs[i, b], pairs[i, 32 + b]
                if x != y:
                    swap = y < x
                    break
            if swap:
                for k in range(4):
                    st[k * w + j] = words[i, 4 + k]
                    st[(4 + k) * w + j] = words[i, k]
            else:
                for k in range(8):
                    st[k * w + j] = words[i, k]
        for j in range(w):
            st[8 * w + j] = np.uint64(0x01)
            st[(_RATE_LANES - 1) * w + j] = np.uint64(0x80) << np.uint64(56)
        _keccak_f(st)
        for j in range(c):
            for k in range(_DIGEST_LANES):
                digest[g + j, k] = st[k * w + j]


def _bswap64_py(x: np.uint64) -> np.uint64:
    """Byte-reverse a uint64 (LLVM folds this to one ``bswap``)."""
    r = np.uint64(0)
    for b in range(8):
        r |= ((x >> np.uint64(8 * b)) & np.uint64(0xFF)) << np.uint64(8 * (7 - b))
    return r


def _words_kernel_py(
    kinds: np.ndarray,
    consts: np.ndarray,
    index: np.ndarray,
    a0: np.ndarray,
    a1: np.ndarray,
    a2: np.ndarray,
    out: np.ndarray,
) -> None:
    """keccak256 of ``abi.encode`` of ``len(kinds)`` (at most 4) 32-byte words a row,
    straight from where each word lives, without building the messages: word ``w`` is
    ``consts[w]`` (kind 0), ``uint256(index[i])`` (kind 1), or row ``i`` of ``a0`` /
    ``a1`` / ``a2`` (kinds 2, 3, 4; ``(n, 4)`` uint64 views of ``(n, 32)`` hashes)."""
    w = _WIDTH
    n = index.shape[0]
    k = kinds.shape[0]
    digest = out.view(np.uint64)
    st = np.zeros(25 * w, dtype=np.uint64)
    for g in range(0, n, w):
        m = min(w, n - g)
        st[:] = 0
        for j in range(m):
            i = g + j
            for word in range(k):
                kind = kinds[word]
                base = 4 * word * w + j
                if kind == 0:
                    for q in range(4):
                        st[base + q * w] = consts[word, q]
                elif kind == 1:  # 24 zero bytes, then the index big-endian
                    st[base + 3 * w] = _bswap64(index[i])
                else:
                    src = a0 if kind == 2 else (a1 if kind == 3 else a2)
                    for q in range(4):
                        st[base + q * w] = src[i, q]
        for j in range(w):  # pad10*1 after 32k bytes: byte 32k is lane 4k's low byte
            st[4 * k * w + j] ^= np.uint64(0x01)
            st[(_RATE_LANES - 1) * w + j] ^= np.uint64(0x80) << np.uint64(56)
        _keccak_f(st)
        for j in range(m):
            for q in range(_DIGEST_LANES):
                digest[g + j, q] = st[q * w + j]


# Until :func:`_load` wraps them, the kernels are their plain Python versions (too slow
# to use: the public functions fall back to the C library instead).
_rol = _rol_py
_keccak_f = _keccak_f_py
_word = _word_py
_bswap64 = _bswap64_py
_rows_kernel: Any = None
_sorted_pairs_kernel: Any = None
_words_kernel: Any = None


def _load() -> bool:
    """Import numba and wrap the kernels, once per process (thread-safe); False when numba
    cannot be imported. numba compiles them (or loads them from its cache) on first call."""
    global _loaded, _HAVE_NUMBA, numba, _rol, _keccak_f, _word, _rows_kernel
    global _sorted_pairs_kernel, _bswap64, _words_kernel
    if _loaded:
        return _HAVE_NUMBA
    with _load_lock:
        if not _loaded:
            try:
                import numba as imported
            except ImportError:  # pragma: no cover - depends on the environment
                _HAVE_NUMBA = False
            else:
                numba = imported
                # inline="always" at numba-IR level: the rotation must fold to one rotate
                _rol = _jit(_rol_py, inline="always")
                _keccak_f = _jit(_keccak_f_py)
                _word = _jit(_word_py, inline="always")
                _rows_kernel = _jit(_rows_kernel_py)
                _sorted_pairs_kernel = _jit(_sorted_pairs_kernel_py)
                _bswap64 = _jit(_bswap64_py, inline="always")
                _words_kernel = _jit(_words_kernel_py)
            _loaded = True
    return _HAVE_NUMBA


def _rebuild_uncached() -> None:
    """Recompile the kernel without the on-disk cache (after a cache I/O failure)."""
    global _rol, _keccak_f, _word, _rows_kernel, _sorted_pairs_kernel, _bswap64, _words_kernel
    # rebuilt inner-first: the outer functions resolve these globals when they compile
    _rol = numba.njit(nogil=True, inline="always")(_rol_py)
    _keccak_f = numba.njit(nogil=True)(_keccak_f_py)
    _word = numba.njit(nogil=True, inline="always")(_word_py)
    _rows_kernel = numba.njit(nogil=True)(_rows_kernel_py)
    _sorted_pairs_kernel = numba.njit(nogil=True)(_sorted_pairs_kernel_py)
    _bswap64 = numba.njit(nogil=True, inline="always")(_bswap64_py)
    _words_kernel = numba.njit(nogil=True)(_words_kernel_py)


def numba_enabled() -> bool:
    """True when :func:`keccak256_rows` uses the numba kernel (numba importable, not disabled
    with ``OGKIT_NO_NUMBA=1``, little-endian host)."""
    if os.environ.get("OGKIT_NO_NUMBA", "") == "1" or sys.byteorder != "little":
        return False
    return _HAVE_NUMBA and _load()


def _call(kernel_name: str, *args: Any) -> Any:
    try:
        return globals()[kernel_name](*args)
    except OSError as exc:
        # numba found a cache dir at import but could not write to it at compile time
        log.warning("numba cache write failed (%s); recompiling without cache", exc)
        _rebuild_uncached()
        return globals()[kernel_name](*args)


def _run_kernel(messages: np.ndarray, twice: bool = False) -> np.ndarray:
    return _call("_rows_kernel", messages, twice).view(np.uint8)


def _check_rows(messages: Any, what: str) -> np.ndarray:
    if not isinstance(messages, np.ndarray) or messages.dtype != np.uint8 or messages.ndim != 2:
        raise ConfigError(
            f"{what} expects a 2-D uint8 numpy array of shape (n, L), got "
            f"{type(messages).__name__} {getattr(messages, 'dtype', '')}"
            f"{getattr(messages, 'shape', '')}"
        )
    if not (messages.flags.c_contiguous and messages.flags.writeable):
        messages = np.array(messages, dtype=np.uint8, order="C", copy=True)
    return messages


def keccak256_rows_twice(messages: np.ndarray) -> np.ndarray:
    """``keccak256(keccak256(row))`` of every row of an ``(n, L)`` uint8 array, ``(n, 32)``:
    OpenZeppelin's standard leaf in one kernel pass (same bytes as two
    :func:`keccak256_rows` calls)."""
    messages = _check_rows(messages, "keccak256_rows_twice")
    if messages.shape[0] == 0:
        return np.empty((0, 32), dtype=np.uint8)
    if not numba_enabled():
        return keccak256_rows(keccak256_rows(messages))
    return _run_kernel(messages, True)


def keccak256_sorted_pairs(pairs: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """OpenZeppelin ``hashPair`` of every row of an ``(m, 64)`` uint8 array of two 32-byte
    nodes: keccak256 of the bytewise smaller node followed by the larger. Writes into
    ``out`` (``(m, 32)`` uint8, C-contiguous) when given; returns it."""
    pairs = _check_rows(pairs, "keccak256_sorted_pairs")
    if pairs.shape[1] != 64:
        raise ConfigError(f"pairs must have 64 bytes a row, got {pairs.shape[1]}")
    m = pairs.shape[0]
    if out is None:
        out = np.empty((m, 32), dtype=np.uint8)
    elif not (
        isinstance(out, np.ndarray)
        and out.dtype == np.uint8
        and out.shape == (m, 32)
        and out.flags.c_contiguous
        and out.flags.writeable
    ):  # the kernel writes 32 bytes a row into out's memory: it must be exactly that
        raise ConfigError(
            f"out must be a writable C-contiguous uint8 array of shape ({m}, 32), got "
            f"{type(out).__name__} {getattr(out, 'dtype', '')}{getattr(out, 'shape', '')}"
        )
    elif np.may_share_memory(out, pairs):  # a pair read after a digest overwrote it
        raise ConfigError("out must not overlap pairs: the digests would overwrite unread pairs")
    if m == 0:
        return out
    if not numba_enabled():
        left, right = pairs[:, :32], pairs[:, 32:]
        swap = np.array([bytes(r) < bytes(lf) for lf, r in zip(left, right, strict=True)])
        msg = pairs.copy()
        msg[swap, :32], msg[swap, 32:] = right[swap], left[swap]
        out[:] = keccak256_rows(msg)
        return out
    _call("_sorted_pairs_kernel", pairs, out)
    return out


def keccak256_words(words: Sequence[np.ndarray | bytes]) -> np.ndarray:
    """keccak256 of ``abi.encode`` of up to four static words a row, ``(n, 32)`` uint8,
    without building the ``(n, 32 k)`` messages first.

    Each word is a 32-byte ``bytes`` constant (the same in every row), an ``(n, 32)``
    uint8 array (a ``bytes32`` a row; at most three), or a 1-D unsigned integer array of
    length ``n`` (a ``uint256`` a row, below 2^64; at most one). Row ``i`` equals
    :func:`keccak256_rows` of the concatenated words."""
    if not 1 <= len(words) <= 4:
        raise ConfigError(f"keccak256_words takes 1 to 4 words, got {len(words)}")
    kinds = np.zeros(len(words), dtype=np.int64)
    consts = np.zeros((len(words), 4), dtype=np.uint64)
    arrays: list[np.ndarray] = []
    index: np.ndarray | None = None
    n: int | None = None
    for w, word in enumerate(words):
        if isinstance(word, bytes | bytearray):
            if len(word) != 32:
                raise ConfigError(f"word {w} must be 32 bytes, got {len(word)}")
            consts[w] = np.frombuffer(bytes(word), dtype="<u8")
            continue
        a = np.asarray(word)
        rows = a.shape[0] if a.ndim else -1
        if n is not None and rows != n:
            raise ConfigError(f"word {w} has {rows} rows, an earlier word {n}")
        n = rows
        if a.ndim == 1 and a.dtype.kind == "u" and index is None:
            kinds[w], index = 1, a.astype(np.uint64, copy=False)
        elif a.ndim == 2 and a.dtype == np.uint8 and a.shape[1] == 32 and len(arrays) < 3:
            kinds[w] = 2 + len(arrays)
            arrays.append(np.ascontiguousarray(a))
        else:
            raise ConfigError(
                f"word {w} must be 32 bytes, an (n, 32) uint8 array or one unsigned index "
                f"array, got {a.dtype}{a.shape}"
            )
    if n is None:
        raise ConfigError("keccak256_words needs at least one per-row word")
    if not numba_enabled() or n == 0:
        msg = np.empty((n, 32 * len(words)), dtype=np.uint8)
        it = iter(arrays)
        for w, word in enumerate(words):
            block = msg[:, 32 * w : 32 * (w + 1)]
            if kinds[w] == 0:
                block[:] = np.frombuffer(bytes(word), dtype=np.uint8)
            elif kinds[w] == 1:
                block[:, :24] = 0
                block[:, 24:] = index.astype(">u8").view(np.uint8).reshape(n, 8)
            else:
                block[:] = next(it)
        return keccak256_rows(msg)
    if index is None:
        index = np.zeros(n, dtype=np.uint64)
    views = [a.view(np.uint64) for a in arrays]
    while len(views) < 3:
        views.append(np.zeros((1, 4), dtype=np.uint64))
    out = np.empty((n, 32), dtype=np.uint8)
    _call("_words_kernel", kinds, consts, index, views[0], views[1], views[2], out)
    return out


def _keccak256_rows_python(messages: np.ndarray) -> np.ndarray:
    """Reference/fallback path: one C-library call per row."""
    out = np.empty((messages.shape[0], 32), dtype=np.uint8)
    for i in range(messages.shape[0]):
        out[i] = np.frombuffer(keccak256(messages[i].tobytes()), dtype=np.uint8)
    return out


def keccak256_rows(messages: np.ndarray) -> np.ndarray:
    """keccak256 of every row of an ``(n, L)`` uint8 array; returns ``(n, 32)`` uint8.

    Every row has the same length ``L`` (which may be 0). Non-contiguous or read-only
    input is copied first, so the kernel is compiled for one array type only.
    """
    if not isinstance(messages, np.ndarray) or messages.dtype != np.uint8 or messages.ndim != 2:
        raise ConfigError(
            "keccak256_rows expects a 2-D uint8 numpy array of shape (n, L), got "
            f"{type(messages).__name__} {getattr(messages, 'dtype', '')}"
            f"{getattr(messages, 'shape', '')}"
        )
    if messages.shape[0] == 0:
        return np.empty((0, 32), dtype=np.uint8)
    if not numba_enabled():
        return _keccak256_rows_python(messages)
    if not (messages.flags.c_contiguous and messages.flags.writeable):
        messages = np.array(messages, dtype=np.uint8, order="C", copy=True)
    return _run_kernel(messages)


def warm_up() -> float:
    """Compile (or load from cache) the numba kernel on a tiny input; returns seconds taken.

    Workers call this once at start-up so the first real batch does not pay for it.
    """
    t0 = time.perf_counter()
    if numba_enabled():
        _run_kernel(np.zeros((1, 1), dtype=np.uint8))
        keccak256_rows_twice(np.zeros((1, 1), dtype=np.uint8))
        keccak256_sorted_pairs(np.zeros((1, 64), dtype=np.uint8))
        keccak256_words([np.zeros(1, dtype=np.uint64), np.zeros((1, 32), dtype=np.uint8)])
    return time.perf_counter() - t0

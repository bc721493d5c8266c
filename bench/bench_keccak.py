"""ogkit's Keccak kernel against the C keccak256 implementations installed beside it.

Prints nanoseconds per Keccak-f[1600] permutation and per message for the shapes the
pipeline hashes (tabular row messages, 96-byte leaves, 64-byte tree nodes, 3 KB image
rows), each as a ratio to the fastest C library measured in the same run:

* ``safe-pysha3`` and ``pycryptodome``, one Python call per message (how they are used);
* the same libraries on one long message, which is their permutation speed with no
  per-call cost: the best any C one-message implementation reached here.

    .venv/bin/python bench/bench_keccak.py [--rows N]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np

from ogkit.crypto.keccak import RATE, keccak256_rows, keccak256_sorted_pairs, warm_up


def _c_libraries() -> dict[str, Callable[[bytes], bytes]]:
    libs: dict[str, Callable[[bytes], bytes]] = {}
    try:
        from _pysha3 import keccak_256

        libs["safe-pysha3"] = lambda b: keccak_256(b).digest()
    except ImportError:
        pass
    try:
        from Crypto.Hash import keccak

        libs["pycryptodome"] = lambda b: keccak.new(digest_bits=256, data=b).digest()
    except ImportError:
        pass
    return libs


def _best(fn: Callable[[], object], repeat: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000, help="messages per shape")
    args = parser.parse_args()
    warm_up()
    libs = _c_libraries()
    rng = np.random.default_rng(7)
    print(f"{'shape':34} {'implementation':28} {'ns/message':>11} {'ns/perm':>9} {'vs best C':>10}")

    # Permutation speed of each C library on one long message (no per-call cost).
    long_msg = rng.integers(0, 256, 64 << 20, dtype=np.uint8).tobytes()
    perms = len(long_msg) // RATE + 1
    c_perm = {name: _best(lambda f=f: f(long_msg)) / perms * 1e9 for name, f in libs.items()}
    for name, ns in c_perm.items():
        print(f"{'one 64 MiB message':34} {name:28} {'':>11} {ns:9.1f} {'':>10}")

    shapes = [
        ("tabular row message, 60 B", 60, keccak256_rows),
        ("row leaf, 96 B", 96, keccak256_rows),
        ("tree node (hashPair), 64 B", 64, keccak256_sorted_pairs),
        ("image row message, 3,178 B", 3178, keccak256_rows),
    ]
    for label, length, kernel in shapes:
        n = args.rows if length < 1000 else max(args.rows // 20, 1000)
        msgs = rng.integers(0, 256, (n, length), dtype=np.uint8)
        per = length // RATE + 1
        rows = [msgs[i].tobytes() for i in range(n)]
        c_ns = {}
        for name, f in libs.items():
            c_ns[name] = _best(lambda f=f, rows=rows: [f(r) for r in rows]) / n * 1e9
        best_c = min(c_ns.values()) if c_ns else float("nan")
        ours = _best(lambda k=kernel, m=msgs: k(m)) / n * 1e9
        results = [(f"{name}, a call each", ns) for name, ns in c_ns.items()]
        results.append(("ogkit numba, 8 in lockstep", ours))
        for name, ns in results:
            ratio = ns / best_c
            print(f"{label:34} {name:28} {ns:11.1f} {ns / per:9.1f} {ratio:9.2f}x")
    if c_perm:
        fastest = min(c_perm.values())
        print(
            f"\nbest C permutation (long message, no call cost): {fastest:.1f} ns; "
            "ratios above are against the best C library called once per message"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

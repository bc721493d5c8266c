"""A deterministic, random-weight, Llama-shaped language model for tests and CI.

``build_tiny_llm(folder)`` writes an onnxruntime-genai model folder (``model.onnx``,
``genai_config.json``, ``tokenizer.json``, ``tokenizer_config.json``) in a fraction of a
second, from nothing but a seed: two builds give the same bytes. The graph uses standard
ONNX ops only (RMSNorm, rotary embeddings, causal multi-head attention over a key/value
cache, a SiLU-gated MLP); the tokenizer is a byte-level BPE over the 256 bytes plus three
special tokens and a ChatML-style chat template. Its answers are noise, but every step a
real model takes (template, tokenizer, prefill, cached decoding, stop token) is there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "TINY_TEMPLATE",
    "Quantized",
    "TinyConfig",
    "build_tiny_llm",
    "byte_symbols",
    "genai_config",
    "llama_decoder",
    "random_weights",
]

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# ChatML-style turns; the model's only template, rendered by ogkit.llm.template.
TINY_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class TinyConfig:
    """The decoder's shape (and, for random weights, their seed and scale). ``kv_heads``
    below ``heads`` shares each key/value head among ``heads // kv_heads`` query heads;
    ``rope_interleaved`` rotates adjacent pairs (GGUF's layout) instead of halves."""

    seed: int = 16
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    intermediate: int = 128
    context: int = 512
    rope_theta: float = 10000.0
    eps: float = 1e-5
    scale: float = 0.08  # weight standard deviation: large enough for peaked logits
    kv_heads: int | None = None  # None: as many as heads
    rope_interleaved: bool = False
    vocab_size: int | None = None  # None: the tiny tokenizer's
    tie_embeddings: bool = False  # the output projection is the embedding, transposed

    @property
    def head_size(self) -> int:
        return self.hidden // self.heads

    @property
    def vocab(self) -> int:
        return self.vocab_size or len(SPECIALS) + 256

    @property
    def kv(self) -> int:
        return self.kv_heads or self.heads


def byte_symbols() -> list[str]:
    """The byte-level BPE alphabet: byte ``b`` is written as one printable character
    (printable Latin-1 bytes as themselves, the others shifted past U+0100), in byte order."""
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    out: dict[int, str] = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in out:
            out[b] = chr(256 + extra)
            extra += 1
    return [out[b] for b in range(256)]


def _tokenizer(cfg: TinyConfig) -> tuple[dict, dict]:
    vocab = {s: i for i, s in enumerate(SPECIALS)}
    for b, sym in enumerate(byte_symbols()):
        vocab[sym] = len(SPECIALS) + b
    added = [
        {
            "id": i,
            "content": s,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for i, s in enumerate(SPECIALS)
    ]
    byte_level = {"add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", **byte_level},
        "post_processor": {"type": "ByteLevel", **byte_level},
        "decoder": {"type": "ByteLevel", **byte_level},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [],
        },
    }
    config = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(a["id"]): {k: v for k, v in a.items() if k != "id"} for a in added
        },
        "bos_token": "<|im_start|>",
        "chat_template": TINY_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "model_max_length": cfg.context,
        "pad_token": "<|endoftext|>",
        "tokenizer_class": "GPT2Tokenizer",
        "unk_token": "<|endoftext|>",
    }
    return tokenizer, config


def genai_config(cfg: TinyConfig) -> dict:
    return {
        "model": {
            "bos_token_id": 1,
            "context_length": cfg.context,
            "decoder": {
                "session_options": {
                    "log_id": "onnxruntime-genai",
                    "intra_op_num_threads": 1,
                    "inter_op_num_threads": 1,
                    "provider_options": [],
                },
                "filename": "model.onnx",
                "head_size": cfg.head_size,
                "hidden_size": cfg.hidden,
                "inputs": {
                    "input_ids": "input_ids",
                    "attention_mask": "attention_mask",
                    "position_ids": "position_ids",
                    "past_key_names": "past_key_values.%d.key",
                    "past_value_names": "past_key_values.%d.value",
                },
                "outputs": {
                    "logits": "logits",
                    "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value",
                },
                "num_attention_heads": cfg.heads,
                "num_hidden_layers": cfg.layers,
                "num_key_value_heads": cfg.kv,
            },
            "eos_token_id": 2,
            "pad_token_id": 0,
            "type": "llama",
            "vocab_size": cfg.vocab,
        },
        "search": {
            "diversity_penalty": 0.0,
            "do_sample": False,
            "early_stopping": True,
            "length_penalty": 1.0,
            "max_length": cfg.context,
            "min_length": 0,
            "no_repeat_ngram_size": 0,
            "num_beams": 1,
            "num_return_sequences": 1,
            "past_present_share_buffer": False,
            "repetition_penalty": 1.0,
            "temperature": 1.0,
            "top_k": 1,
            "top_p": 1.0,
        },
    }


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op: str, *inputs: str, **attrs) -> str:
        self.n += 1
        out = f"{op.lower()}_{self.n}"
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=f"n{self.n}", **attrs))
        return out


Weights = Callable[[str, tuple[int, ...]], np.ndarray]


def random_weights(cfg: TinyConfig) -> Weights:
    """Seeded normal weights (norm scales of one), drawn in the graph's order."""
    rng = np.random.default_rng(cfg.seed)

    def weight(name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name.endswith("norm"):
            return np.ones(shape, np.float32)
        return (rng.standard_normal(shape) * cfg.scale).astype(np.float32)

    return weight


Quantized = Callable[[str], "tuple[np.ndarray, np.ndarray, np.ndarray] | None"]


def llama_decoder(
    cfg: TinyConfig, weight: Weights | None = None, quantized: Quantized | None = None
) -> onnx.ModelProto:
    """A Llama-shaped decoder graph for onnxruntime-genai in standard ONNX ops; ``weight``
    gives each named tensor (``embed``, ``l<i>.wq`` … as ``(in, out)`` matrices,
    ``lm_head``, norms), random ones by default. ``quantized(name)`` may give a layer's
    matrix as 4-bit blocks of 32 instead — ``(packed (out, in/32, 16) uint8, float32
    scales, zero points)``, the zero points float32 or packed uint8 (two a byte), run by
    onnxruntime's ``com.microsoft.MatMulNBits``."""
    weight = weight or random_weights(cfg)
    H, D, L, V, KV = cfg.heads, cfg.head_size, cfg.layers, cfg.vocab, cfg.kv

    uses_nbits = False

    def mm(x: str, name: str, k: int, n: int) -> str:
        nonlocal uses_nbits
        q = quantized(name) if quantized is not None else None
        if q is None:
            return g.op("MatMul", x, w(name, k, n))
        packed, scales, zeros = q
        if packed.shape != (n, k // 32, 16) or scales.shape != (n * (k // 32),):
            raise ValueError(f"quantized {name} has shape {packed.shape}, not {(n, k // 32, 16)}")
        uses_nbits = True
        inputs = [g.const(name + ".q4", packed), g.const(name + ".scales", scales),
                  g.const(name + ".zeros", zeros)]  # fmt: skip
        # Integer zero points take onnxruntime's fast kernel, with int8 activations
        # (accuracy level 4); float ones its exact but slow path.
        level = 4 if zeros.dtype == np.uint8 else 0
        return g.op("MatMulNBits", x, *inputs, domain="com.microsoft", K=k, N=n, bits=4,
                    block_size=32, accuracy_level=level)  # fmt: skip

    def w(name: str, *shape: int) -> str:
        value = np.ascontiguousarray(weight(name, shape), dtype=np.float32)
        if value.shape != shape:
            raise ValueError(f"weight {name} has shape {value.shape}, not {shape}")
        return g.const(name, value)

    g = _Graph()
    i64 = lambda name, v: g.const(name, np.array(v, np.int64))  # noqa: E731
    f32 = lambda name, v: g.const(name, np.array(v, np.float32))  # noqa: E731
    eps, half, neg = f32("eps", cfg.eps), f32("half_pow", 2.0), f32("neg_inf", -1e9)
    one_f, zero_f = f32("one_f", 1.0), f32("zero_f", 0.0)
    ax_last, ax0, ax1, ax2 = i64("ax_last", [-1]), i64("ax0", [0]), i64("ax1", [1]), i64("ax2", [2])
    heads_shape = i64("heads_shape", [0, 0, H, D])
    kv_shape = heads_shape if KV == H else i64("kv_shape", [0, 0, KV, D])
    merge_shape = i64("merge_shape", [0, 0, cfg.hidden])
    inv_freq = f32("inv_freq", 1.0 / cfg.rope_theta ** (np.arange(0, D, 2, dtype=np.float64) / D))
    scale = f32("attn_scale", 1.0 / np.sqrt(D))

    def rms(x: str, weight: str) -> str:
        var = g.op("ReduceMean", g.op("Pow", x, half), ax_last, keepdims=1)
        return g.op(
            "Mul", g.op("Mul", x, g.op("Reciprocal", g.op("Sqrt", g.op("Add", var, eps)))), weight
        )

    embed = w("embed", V, cfg.hidden)
    x = g.op("Gather", embed, "input_ids", axis=0)  # [B, S, hidden]

    # Rotary angles from position_ids: [B, S, 1, D/2]
    pos = g.op("Unsqueeze", g.op("Cast", "position_ids", to=TensorProto.FLOAT), ax_last)
    freqs = g.op("Unsqueeze", g.op("Mul", pos, inv_freq), ax2)
    cos, sin = g.op("Cos", freqs), g.op("Sin", freqs)

    def rope(t: str) -> str:  # t: [B, S, H, D]
        if cfg.rope_interleaved:  # adjacent pairs (x0, x1), (x2, x3), ...
            pairs = g.op("Reshape", t, i64(f"pairs_{g.n}", [0, 0, 0, D // 2, 2]))
            even = g.op("Squeeze", g.op("Slice", pairs, i64(f"p0_{g.n}", [0]),
                        i64(f"p1_{g.n}", [1]), ax_last), ax_last)  # fmt: skip
            odd = g.op("Squeeze", g.op("Slice", pairs, i64(f"p2_{g.n}", [1]),
                       i64(f"p3_{g.n}", [2]), ax_last), ax_last)  # fmt: skip
            r0 = g.op("Sub", g.op("Mul", even, cos), g.op("Mul", odd, sin))
            r1 = g.op("Add", g.op("Mul", even, sin), g.op("Mul", odd, cos))
            both = g.op("Concat", g.op("Unsqueeze", r0, ax_last), g.op("Unsqueeze", r1, ax_last),
                        axis=-1)  # fmt: skip
            return g.op("Reshape", both, i64(f"unpair_{g.n}", [0, 0, 0, D]))
        # the two halves
        first = g.op("Slice", t, i64(f"s0_{g.n}", [0]), i64(f"e0_{g.n}", [D // 2]), ax_last)
        second = g.op("Slice", t, i64(f"s1_{g.n}", [D // 2]), i64(f"e1_{g.n}", [D]), ax_last)
        r1 = g.op("Sub", g.op("Mul", first, cos), g.op("Mul", second, sin))
        r2 = g.op("Add", g.op("Mul", second, cos), g.op("Mul", first, sin))
        return g.op("Concat", r1, r2, axis=-1)

    # Causal mask [1, 1, S, T] plus padding from attention_mask [B, 1, 1, T].
    s_len = g.op("Gather", g.op("Shape", "input_ids"), ax1, axis=0)
    t_len = g.op("Gather", g.op("Shape", "attention_mask"), ax1, axis=0)
    zero = i64("zero_i", 0)
    one = i64("one_i", 1)
    t_scalar = g.op("Squeeze", t_len, ax0)
    s_scalar = g.op("Squeeze", s_len, ax0)
    q_pos = g.op("Range", g.op("Sub", t_scalar, s_scalar), t_scalar, one)
    k_pos = g.op("Range", zero, t_scalar, one)
    allowed = g.op(
        "LessOrEqual", g.op("Unsqueeze", k_pos, ax0), g.op("Unsqueeze", q_pos, ax1)
    )  # [S, T]
    causal = g.op("Where", allowed, zero_f, neg)
    pad = g.op(
        "Mul",
        g.op("Sub", one_f, g.op("Cast", "attention_mask", to=TensorProto.FLOAT)),
        neg,
    )
    mask = g.op(
        "Add",
        g.op("Unsqueeze", causal, i64("ax01", [0, 1])),
        g.op("Unsqueeze", pad, i64("ax12", [1, 2])),
    )

    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total"]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "seq"]),
    ]
    outputs = []
    for layer in range(L):
        for kind in ("key", "value"):
            inputs.append(
                helper.make_tensor_value_info(
                    f"past_key_values.{layer}.{kind}", TensorProto.FLOAT, ["batch", KV, "past", D]
                )
            )
    for layer in range(L):
        p = f"l{layer}."
        h = rms(x, w(p + "attn_norm", cfg.hidden))
        q = rope(
            g.op(
                "Reshape",
                mm(h, p + "wq", cfg.hidden, H * D),
                heads_shape,
            )
        )
        k = rope(
            g.op(
                "Reshape",
                mm(h, p + "wk", cfg.hidden, KV * D),
                kv_shape,
            )
        )
        v = g.op("Reshape", mm(h, p + "wv", cfg.hidden, KV * D), kv_shape)
        q, k, v = (g.op("Transpose", t, perm=[0, 2, 1, 3]) for t in (q, k, v))  # [B, H, S, D]
        k_all = g.op("Concat", f"past_key_values.{layer}.key", k, axis=2)
        v_all = g.op("Concat", f"past_key_values.{layer}.value", v, axis=2)
        g.nodes.append(helper.make_node("Identity", [k_all], [f"present.{layer}.key"]))
        g.nodes.append(helper.make_node("Identity", [v_all], [f"present.{layer}.value"]))
        for kind in ("key", "value"):
            outputs.append(
                helper.make_tensor_value_info(
                    f"present.{layer}.{kind}", TensorProto.FLOAT, ["batch", KV, "total", D]
                )
            )
        if KV != H:  # each key/value head serves H // KV query heads
            repeat = i64(f"repeat_{layer}", [1, 1, H // KV, 1, 1])
            shape = i64(f"rep_shape_{layer}", [0, H, -1, D])
            k_all, v_all = (
                g.op("Reshape", g.op("Tile", g.op("Unsqueeze", t, ax2), repeat), shape)
                for t in (k_all, v_all)
            )
        scores = g.op(
            "Add",
            g.op("Mul", g.op("MatMul", q, g.op("Transpose", k_all, perm=[0, 1, 3, 2])), scale),
            mask,
        )
        attn = g.op("MatMul", g.op("Softmax", scores, axis=-1), v_all)  # [B, H, S, D]
        merged = g.op("Reshape", g.op("Transpose", attn, perm=[0, 2, 1, 3]), merge_shape)
        x = g.op("Add", x, mm(merged, p + "wo", H * D, cfg.hidden))
        h = rms(x, w(p + "mlp_norm", cfg.hidden))
        gate = mm(h, p + "w_gate", cfg.hidden, cfg.intermediate)
        up = mm(h, p + "w_up", cfg.hidden, cfg.intermediate)
        act = g.op("Mul", g.op("Mul", gate, g.op("Sigmoid", gate)), up)
        x = g.op("Add", x, mm(act, p + "w_down", cfg.intermediate, cfg.hidden))
    x = rms(x, w("final_norm", cfg.hidden))
    head = g.op("Transpose", embed, perm=[1, 0]) if cfg.tie_embeddings else None
    head = head or w("lm_head", cfg.hidden, V)
    g.nodes.append(helper.make_node("MatMul", [x, head], ["logits"]))
    outputs.insert(
        0, helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", V])
    )
    graph = helper.make_graph(g.nodes, "ogkit_tiny_llm", inputs, outputs, g.inits)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 18)]
        + ([helper.make_opsetid("com.microsoft", 1)] if uses_nbits else []),
        producer_name="ogkit.llm.tiny",
        producer_version="1",
    )
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def _json_bytes(doc: dict) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def build_tiny_llm(folder: str | Path, config: TinyConfig | None = None) -> Path:
    """Write the tiny model's onnxruntime-genai folder to ``folder`` (created; existing
    files of the same names are replaced atomically) and return it."""
    cfg = config or TinyConfig()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer, tokenizer_config = _tokenizer(cfg)
    files = {
        "model.onnx": llama_decoder(cfg).SerializeToString(deterministic=True),
        "genai_config.json": _json_bytes(genai_config(cfg)),
        "tokenizer.json": _json_bytes(tokenizer),
        "tokenizer_config.json": _json_bytes(tokenizer_config),
    }
    for name, data in files.items():
        tmp = folder / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(folder / name)
    return folder

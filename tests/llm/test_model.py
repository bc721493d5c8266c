"""The tiny model and its bundle: byte-identical builds, the same receipts from two
independent builds, strict bundles, the template, decoding (greedy, seeded, streaming)."""

from __future__ import annotations

import struct

import pytest

from ogkit.errors import ConfigError, InvalidModelError
from ogkit.hub import Hub
from ogkit.llm.batch import attest_calls
from ogkit.llm.bundle import BUNDLE_MAGIC, materialize, pack, pack_folder, unpack
from ogkit.llm.calls import ChatRequest, output_hash, token_ids_hash
from ogkit.llm.model import load_chat_model
from ogkit.llm.publish import publish_llm
from ogkit.llm.session import chat
from ogkit.llm.tiny import build_tiny_llm
from ogkit.store import content_id
from ogkit.verify import verify_receipt


def test_two_independent_builds_give_identical_bytes_and_receipts(
    tmp_path, owner, node_attester, requester_address
):
    receipts = []
    ids = set()
    for i in (1, 2):
        folder = build_tiny_llm(tmp_path / f"build{i}")
        bundle = pack_folder(folder)
        ids.add(content_id(bundle))
        hub = Hub(home=tmp_path / f"home{i}")
        publish_llm(hub, folder, name="tiny-chat", version="1.0.0", price=0, signer=owner)
        model = load_chat_model("tiny-chat", hub=hub)
        calls = [model.run(ChatRequest.make(p, max_tokens=10)) for p in ("Hi", "What is 2+2?")]
        batch = attest_calls(
            calls,
            model=model,
            attester=node_attester,
            requester=requester_address,
            store=hub.store,
            job="same job",
            timestamp=1_800_000_000,
        )
        receipts.append([batch.receipt(0), batch.receipt(1)])
    assert len(ids) == 1
    assert (tmp_path / "build1" / "model.onnx").read_bytes() == (
        tmp_path / "build2" / "model.onnx"
    ).read_bytes()
    assert receipts[0] == receipts[1]


def test_bundles_are_strict(tmp_path, tiny_folder):
    files = unpack(pack_folder(tiny_folder))
    assert set(files) == {
        "genai_config.json",
        "model.onnx",
        "tokenizer.json",
        "tokenizer_config.json",
    }
    good = pack(files)
    with pytest.raises(InvalidModelError, match="after its last file"):
        unpack(good + b"\x00")
    with pytest.raises(InvalidModelError, match="truncated"):
        unpack(good[:-1])
    with pytest.raises(InvalidModelError, match="not an ogkit bundle"):
        unpack(b"PK\x03\x04" + good)

    # Unsorted or repeated names, and paths that leave the folder, are refused.
    def raw(entries):
        out = BUNDLE_MAGIC + struct.pack(">I", len(entries))
        for name, data in entries:
            out += struct.pack(">I", len(name)) + name + struct.pack(">Q", len(data)) + data
        return out

    with pytest.raises(InvalidModelError, match="sorted and unique"):
        unpack(raw([(b"b", b"1"), (b"a", b"2")]))
    with pytest.raises(InvalidModelError, match="sorted and unique"):
        unpack(raw([(b"a", b"1"), (b"a", b"2")]))
    for name in (b"../evil", b"/etc/passwd", b"a/../../b", b".hidden"):
        with pytest.raises(InvalidModelError):
            unpack(raw([(name, b"x")]))
    # A file changed in the cache is put back from the bundle, never loaded.
    folder = materialize(good, tmp_path / "cache")
    (folder / "tokenizer_config.json").write_text("{}")
    assert materialize(good, tmp_path / "cache") == folder
    assert (folder / "tokenizer_config.json").read_bytes() == files["tokenizer_config.json"]


def test_publish_refuses_what_is_not_a_language_model(tmp_path, hub, owner, tiny_folder):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "model.onnx").write_bytes((tiny_folder / "model.onnx").read_bytes())
    with pytest.raises(InvalidModelError, match=r"lacks genai_config\.json"):
        publish_llm(hub, tmp_path / "half", name="half", version="1.0.0", price=0, signer=owner)
    assert hub.list() == []


def test_template_and_decoding(model):
    request = ChatRequest.make(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Héllo"}],
        max_tokens=12,
    )
    text = model.render(request)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHéllo<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    ids = model.prompt_ids(request)
    assert ids[0] == 1 and ids.count(1) == 3 and ids.count(2) == 2  # special tokens
    plain = text.replace("<|im_start|>", "").replace("<|im_end|>", "")
    assert len(ids) == len(plain.encode()) + 5  # each special one token, each byte one
    a, b = model.run(request), model.run(request)
    assert a.completion_ids == b.completion_ids and len(a.completion_ids) == 12
    assert a.finish_reason == "length"
    # Seeded sampling re-executes; another seed gives another completion.
    s1 = ChatRequest.make("Hi", max_tokens=16, temperature=0.9, seed=5)
    s2 = ChatRequest.make("Hi", max_tokens=16, temperature=0.9, seed=6)
    assert model.run(s1).completion_ids == model.run(s1).completion_ids
    assert model.run(s1).completion_ids != model.run(s2).completion_ids
    assert (
        model.run(s1).completion_ids
        != model.run(ChatRequest.make("Hi", max_tokens=16)).completion_ids
    )


def test_requests_are_checked_all_at_once(model):
    with pytest.raises(ConfigError) as raised:
        ChatRequest.make([{"role": "wizard", "content": 3}], max_tokens=0, temperature=5.0, seed=-1)
    text = str(raised.value)
    for part in ("role must be", "content must be", "max_tokens", "temperature", "seed"):
        assert part in text
    with pytest.raises(ConfigError, match="needs a seed"):
        ChatRequest.make("hi", temperature=0.5)
    with pytest.raises(ConfigError, match="context"):
        model.run(ChatRequest.make("hi", max_tokens=600))


def test_chat_response_receipt_and_stream(model, llm_hub, node_attester, requester_address, policy):
    kwargs = {"attester": node_attester, "requester": requester_address, "store": llm_hub.store}
    r = chat(model, "Tell me a story", max_tokens=20, seed=3, temperature=0.7, **kwargs)
    assert r.object == "chat.completion" and r.model == "tiny-chat@1.0.0"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == model.decode_text(r.completion_ids)
    assert r.usage.completion_tokens == len(r.completion_ids) == 20
    assert r.usage.total_tokens == r.usage.prompt_tokens + 20
    check = verify_receipt(r.receipt, policy.allowlist)
    assert check.ok, check.problems
    # The receipt's output hash is the hash of the completion's token ids and usage.
    assert (
        r.receipt["leaf_values"]["outputHash"]
        == "0x" + output_hash(r.completion_ids, r.to_dict()["usage"], "length").hex()
    )
    chunks = list(
        chat(
            model, "Tell me a story", max_tokens=20, seed=3, temperature=0.7, stream=True, **kwargs
        )
    )
    streamed = chunks[-1].completion
    assert [c.token_id for c in chunks[:-1]] == r.completion_ids
    # Streamed pieces are the tokenizer's incremental decoding of random bytes; the text
    # may differ from a one-shot decode, which is why receipts hash ids, never text.
    assert streamed.choices[0].message.content == r.choices[0].message.content
    assert streamed.completion_ids == r.completion_ids
    # Same tokens, same leaf: the receipts differ only by the batch they are in.
    assert streamed.receipt["leaf_values"]["inputHash"] == r.receipt["leaf_values"]["inputHash"]
    assert streamed.receipt["leaf_values"]["outputHash"] == r.receipt["leaf_values"]["outputHash"]
    assert verify_receipt(streamed.receipt, policy.allowlist).ok


def test_token_hashes_are_over_ids_not_text():
    assert token_ids_hash(b"completion", [1, 2]) != token_ids_hash(b"completion", [2, 1])
    assert token_ids_hash(b"completion", [1]) != token_ids_hash(b"prompt", [1])
    assert token_ids_hash(b"completion", []) != token_ids_hash(b"completion", [0])
    with pytest.raises(ConfigError):
        token_ids_hash(b"completion", [-1])


def test_spec_vectors():
    """docs/spec.md §12.3 and §12.4: the hashes and the sampler, byte for byte."""
    import numpy as np

    from ogkit.hub.manifest import canonical_json
    from ogkit.llm.calls import input_hash, request_hash, sample_token

    r = ChatRequest.make("Hi", max_tokens=4)
    assert canonical_json(r.to_dict()) == (
        b'{"max_tokens":4,"messages":[{"content":"Hi","role":"user"}],"seed":null,'
        b'"temperature":0.0}'
    )
    assert request_hash(r).hex() == (
        "55377d2c80d52895b4bba3f4f8e737b8e292d1ecadf6d0468d9f39f27f0493f8"
    )
    assert token_ids_hash(b"prompt", [1, 2, 3]).hex() == (
        "1efc4c64b5b03c3f8b6dbdba372f131ecb44ea5770d4f535d37dc306a176e7bd"
    )
    assert input_hash(r, [1, 2, 3]).hex() == (
        "d2aef8e5077c4cc7e87d8fb7e661ba1fa134be5d7dd35a6f92ce294792c79221"
    )
    usage = {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    assert output_hash([5, 6, 2], usage, "stop").hex() == (
        "7f55e0e7d3e37a51ac6de60e823b24c21a8baf53beb23aa70eef68383ae56d18"
    )
    assert output_hash([5, 6, 2], usage, "length") != output_hash([5, 6, 2], usage, "stop")
    assert sample_token(np.array([0.0, 1.0, 2.0], np.float32), 1.0, 42, 0) == 1


def test_public_names_and_light_imports():
    import subprocess
    import sys

    import ogkit.llm

    for name in ogkit.llm.__all__:
        assert getattr(ogkit.llm, name) is not None, name
    # ogkit.verify knows chat batches without loading the runtime or the model builder.
    code = (
        "import sys, ogkit.verify, ogkit.llm; "
        "print('onnxruntime_genai' in sys.modules, 'ogkit.llm.tiny' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]

"""``ogkit chat`` from the shell: build-tiny publishes (twice: the same id), a chat prints an
OpenAI-shaped response with a receipt that `ogkit receipt verify` and `ogkit verify`
accept; bad requests fail with one clear line."""

from __future__ import annotations

import json

from ogkit.cli import main
from ogkit.keys import KeyStore


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_build_tiny_chat_and_verify(home, capsys, tmp_path):
    assert main(["chat", "build-tiny", "--dev-key", "--json"]) == 0
    first = _json(capsys)
    assert first["schema"] == "ogkit.chat.publish.v1" and first["ref"] == "tiny-chat@1.0.0"
    assert main(["chat", "build-tiny", "--dev-key", "--json"]) == 0  # same bytes: a no-op
    assert _json(capsys)["model_id"] == first["model_id"]
    keys = KeyStore(home)
    enclave = keys.ensure_dev_key("enclave")
    keys.ensure_dev_key("requester")

    receipt_file = tmp_path / "receipt.json"
    argv = ["chat", "tiny-chat", "Hello there", "--max-tokens", "6", "--json"]
    assert main([*argv, "--receipt", str(receipt_file)]) == 0
    out = _json(capsys)
    assert out["schema"] == "ogkit.chat.completion.v1" and out["object"] == "chat.completion"
    assert (
        out["model"] == "tiny-chat@1.0.0" and out["batch_id"] == out["receipt"]["claim"]["batch_id"]
    )
    assert out["usage"]["completion_tokens"] == len(out["completion_ids"]) == 6
    assert isinstance(out["choices"][0]["message"]["content"], str)
    assert json.loads(receipt_file.read_text()) == out["receipt"]
    runtime_id = out["receipt"]["claim"]["runtime_id"]
    assert (
        main(["allowlist", "add", "--attester", enclave.address, "--measurement", runtime_id]) == 0
    )
    capsys.readouterr()
    assert main(["receipt", "verify", str(receipt_file), "--json"]) == 0
    assert _json(capsys)["ok"] is True
    verify = ["verify", out["artifact_id"], "--sample-rate", "1", "--allow-unbound-inputs"]
    assert main([*verify, "--json"]) == 0
    verdict = _json(capsys)
    assert verdict["passed"] and verdict["sample_size"] == 1, verdict["findings"]

    # The requester's commitment for the same request is the batch's dataset commitment.
    assert main([*argv[:5], "--commitment-only", "--json"]) == 0
    commitment = _json(capsys)
    from ogkit.llm.batch import load_chat_batch
    from ogkit.store import ContentStore

    batch = load_chat_batch(out["artifact_id"], ContentStore(home / "store"))
    assert commitment["text"] == f"{batch.manifest.dataset_id}:1"
    verify_bound = ["verify", out["artifact_id"], "--commitment", commitment["text"], "--json"]
    assert main(verify_bound) == 0
    assert _json(capsys)["inputs_bound"] is True

    # Streaming prints the tokens; the summary goes to stderr.
    assert main(["chat", "tiny-chat", "Hi", "--max-tokens", "3", "--stream"]) == 0
    assert "3 completion tokens" in capsys.readouterr().err

    assert main(["chat", "tiny-chat", "Hi", "--temperature", "0.5"]) == 1
    assert "needs a seed" in capsys.readouterr().err
    assert main(["chat", "no-such-model", "Hi"]) == 1
    assert "no model named" in capsys.readouterr().err

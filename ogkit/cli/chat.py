"""``ogkit chat``: one verifiable chat completion from the shell, and the tiny model.

``ogkit chat MODEL "prompt"`` decodes with the hub's language model MODEL, attests the
call as a batch of one (the software enclave key ``--attester-key``) and prints the
answer, its usage and where its receipt is; ``--json`` prints the whole OpenAI-shaped
response with the receipt. ``ogkit chat build-tiny`` builds the deterministic tiny model
and publishes it; ``ogkit chat publish FOLDER`` publishes any onnxruntime-genai folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from ogkit.cli.common import add_command, parse_amount, print_json
from ogkit.errors import ConfigError
from ogkit.settings import Settings

__all__ = ["register"]

TINY_NAME = "tiny-chat"


def _hub(settings: Settings):
    from ogkit.hub import Hub

    return Hub(settings.store, home=settings.home)


def _publish(args: argparse.Namespace, settings: Settings, folder: Path, name: str) -> int:
    from ogkit.keys import KeyStore
    from ogkit.llm.publish import ensure_llm_published, publish_llm

    hub = _hub(settings)
    keys = KeyStore(settings.home)
    signer = keys.ensure_dev_key(args.key) if args.dev_key else keys.load(args.key)
    options = {"name": name, "version": args.version, "price": parse_amount(args.price)}
    if args.model == "build-tiny":  # the same bytes every time: publishing again is a no-op
        manifest = ensure_llm_published(hub, folder, signer=signer, **options)
    else:
        manifest = publish_llm(hub, folder, signer=signer, description=args.description, **options)
    if args.json:
        print_json(
            {
                "schema": "ogkit.chat.publish.v1",
                "ref": manifest.ref,
                "model_id": manifest.model_id,
                "owner": manifest.owner,
            }
        )
    else:
        print(f"published {manifest.ref} as {manifest.model_id}")
    return 0


def _chat(args: argparse.Namespace, settings: Settings) -> int:
    if args.model == "build-tiny":
        from ogkit.llm.tiny import build_tiny_llm

        with tempfile.TemporaryDirectory() as tmp:
            folder = build_tiny_llm(Path(tmp) / "tiny")
            return _publish(args, settings, folder, args.name or TINY_NAME)
    if args.prompt is None:
        raise ConfigError('give a prompt: `ogkit chat MODEL "your question"`')
    if args.model == "publish":
        if not args.name:
            raise ConfigError("`ogkit chat publish FOLDER` needs --name NAME")
        return _publish(args, settings, Path(args.prompt), args.name)

    from ogkit.attest import make_attester
    from ogkit.keys import KeyStore
    from ogkit.llm.model import load_chat_model
    from ogkit.llm.session import ChatSession

    hub = _hub(settings)
    keys = KeyStore(settings.home)
    model = load_chat_model(args.model, hub=hub, threads=args.threads)
    messages = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": args.prompt})
    options = {"max_tokens": args.max_tokens, "temperature": args.temperature, "seed": args.seed}
    if args.commitment_only:  # the requester's side: what its order commits to
        from ogkit.llm.batch import commit_requests
        from ogkit.llm.calls import ChatRequest

        c = commit_requests([ChatRequest.make(messages, **options)], model)
        text = f"{c.input_root}:{c.row_count}"
        if args.json:
            print_json({"schema": "ogkit.commitment.v1", **c.to_dict(), "text": text})
        else:
            print(text)
        return 0
    requester = (
        args.requester if args.requester.startswith("0x") else keys.load(args.requester).address
    )
    session = ChatSession(
        model,
        attester=make_attester("software", signer=keys.load(args.attester_key)),
        requester=requester,
        store=hub.store,
        job=args.job,
    )
    if args.stream and not args.json:
        response = None
        for chunk in session.chat(messages, stream=True, **options):
            sys.stdout.write(chunk.choices[0].delta.content)
            sys.stdout.flush()
            response = chunk.completion or response
        print()
    else:
        response = session.chat(messages, **options)
        session.seal()
    assert response is not None and response.batch is not None
    if args.receipt:
        tmp = args.receipt.with_name(f".{args.receipt.name}.tmp")
        tmp.write_text(json.dumps(response.receipt, indent=2, sort_keys=True) + "\n")
        tmp.replace(args.receipt)
    if args.json:
        print_json({"schema": "ogkit.chat.completion.v1", **response.to_dict()})
        return 0
    if not args.stream:
        print(response.choices[0].message.content)
    u = response.usage
    print(
        f"[{response.choices[0].finish_reason}; {u.prompt_tokens} prompt + "
        f"{u.completion_tokens} completion tokens; batch {response.batch.batch_id}, artefact "
        f"{response.batch.artifact_id}; `ogkit verify {response.batch.artifact_id}` re-decodes it]",
        file=sys.stderr,
    )
    return 0


def register(groups) -> None:
    p = add_command(
        groups,
        "chat",
        _chat,
        'a verifiable chat completion (MODEL "prompt"); `ogkit chat build-tiny` publishes the '
        "tiny test model, `ogkit chat publish FOLDER --name N` an onnxruntime-genai folder",
    )
    p.add_argument("model", help="hub ref of a language model, or build-tiny, or publish")
    p.add_argument("prompt", nargs="?", help="the user message (for publish: the folder)")
    p.add_argument("--system", default="", help="a system message before the prompt")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default)")
    p.add_argument("--seed", type=int, default=None, help="needed when --temperature > 0")
    p.add_argument("--stream", action="store_true", help="print tokens as they are decoded")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads (in the runtime id)")
    p.add_argument("--job", default=None, help="job name (default: unique per call)")
    p.add_argument("--attester-key", default="enclave", help="software enclave key name")
    p.add_argument("--requester", default="requester", help="requester address or key name")
    p.add_argument("--receipt", type=Path, default=None, help="also write the receipt here")
    p.add_argument(
        "--commitment-only",
        action="store_true",
        help="print the requester's commitment (INPUT_ROOT:1) for this request, for "
        "`ogkit order new --commitment`, without decoding",
    )
    group = p.add_argument_group("build-tiny and publish")
    group.add_argument("--name", default=None, help=f"hub name (build-tiny: {TINY_NAME})")
    group.add_argument("--version", default="1.0.0")
    group.add_argument("--price", default="0", help="per call: base units or e.g. 0.01opg")
    group.add_argument("--description", default="")
    group.add_argument("--key", default="owner", help="the owner's signing key (default: owner)")
    group.add_argument(
        "--dev-key", action="store_true", help="create the owner's development key if missing"
    )

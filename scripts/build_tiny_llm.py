"""Build the deterministic tiny language model (and optionally publish it).

    .venv/bin/python scripts/build_tiny_llm.py OUT_FOLDER [--publish] [--name tiny-chat]

Writes an onnxruntime-genai folder from nothing but a seed (ogkit.llm.tiny): two builds
give the same bytes, so the same model id. With --publish it goes into the hub of
$OGKIT_HOME, signed by the `owner` key (what `ogkit chat build-tiny` does).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ogkit.llm.bundle import pack_folder
from ogkit.llm.tiny import TinyConfig, build_tiny_llm
from ogkit.store import content_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=TinyConfig.seed)
    parser.add_argument("--publish", action="store_true")
    parser.add_argument("--name", default="tiny-chat")
    parser.add_argument("--version", default="1.0.0")
    args = parser.parse_args(argv)
    folder = build_tiny_llm(args.out, TinyConfig(seed=args.seed))
    print(f"{folder}: model id {content_id(pack_folder(folder))}")  # noqa: T201
    if args.publish:
        from ogkit.hub import Hub
        from ogkit.keys import KeyStore
        from ogkit.llm.publish import publish_llm
        from ogkit.settings import Settings

        settings = Settings.from_env()
        hub = Hub(settings.store, home=settings.home)
        owner = KeyStore(settings.home).ensure_dev_key("owner")
        m = publish_llm(hub, folder, name=args.name, version=args.version, price=0, signer=owner)
        print(f"published {m.ref} as {m.model_id}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The public surface: what `import ogkit` and `import ogkit.chain` promise, and the error
tree."""

from __future__ import annotations

import ogkit
from ogkit import errors


def test_all_names_exist():
    for name in ogkit.__all__:
        assert hasattr(ogkit, name), name


def test_chain_names_exist_and_import_lazily():
    import subprocess
    import sys

    import ogkit.chain

    for name in ogkit.chain.__all__:
        assert hasattr(ogkit.chain, name), name
    assert {"ChainClient", "connect", "transact", "deploy_contracts"} <= set(ogkit.chain.__all__)
    # BatchStatus (what settle and audit import at start-up) does not pull in web3.
    code = "import sys, ogkit.chain.bindings; print('web3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_public_surface_is_stable():
    steps = {
        "load_model",
        "run_verified_inference",
        "verify_batch",
        "verify_receipt",
        "get_client",
        "load_batch",
        "make_attester",
    }
    assert steps <= set(ogkit.__all__)


def test_error_tree_rooted_and_documented():
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, ogkit.OgkitError), name
        assert name in errors.__doc__, f"{name} missing from the tree in ogkit/errors.py"
    assert issubclass(ogkit.SchemaMismatchError, ValueError)
    assert issubclass(ogkit.ModelNotFoundError, LookupError)


def test_every_finding_reason_is_documented_for_json_readers():
    """docs/cli-json.md lists the reasons a verdict's findings can name: all of them,
    and none that no longer exists."""
    import re
    from pathlib import Path

    from ogkit.verify import REASONS

    text = (Path(__file__).parents[1] / "docs" / "cli-json.md").read_text()
    start = text.index("Finding reasons are the keys of")
    listed = re.findall(r"`([a-z0-9-]+)`", text[start : text.index("\n\n", start)])
    assert listed == list(REASONS)

"""Fixtures for verifiable chat: the tiny model built once, published into each test's hub,
and the node's attester (the node holds its own key, as the threat model says)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ogkit.attest import make_attester
from ogkit.keys import KeyStore
from ogkit.llm.model import load_chat_model
from ogkit.llm.publish import publish_llm
from ogkit.llm.tiny import TinyConfig, build_tiny_llm
from ogkit.verify import Allowlist, VerifyPolicy


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    return build_tiny_llm(tmp_path_factory.mktemp("tiny") / "tiny-chat")


@pytest.fixture(scope="session")
def other_folder(tmp_path_factory) -> Path:
    """Another tiny model (other weights, same tokenizer and template)."""
    return build_tiny_llm(tmp_path_factory.mktemp("other") / "other", TinyConfig(seed=17))


@pytest.fixture
def llm_hub(hub, owner, tiny_folder, other_folder):
    publish_llm(hub, tiny_folder, name="tiny-chat", version="1.0.0", price=1000, signer=owner)
    publish_llm(hub, other_folder, name="other-chat", version="1.0.0", price=10, signer=owner)
    return hub


@pytest.fixture
def model(llm_hub):
    return load_chat_model("tiny-chat", hub=llm_hub)


@pytest.fixture
def node_attester(home):
    return make_attester("software", signer=KeyStore(home).ensure_dev_key("enclave"))


@pytest.fixture
def requester_address(home) -> str:
    return KeyStore(home).ensure_dev_key("requester").address


@pytest.fixture
def policy(node_attester, model) -> VerifyPolicy:
    """A verifier that approves the node's key and runtime and re-decodes every call."""
    allow = Allowlist().approve(node_attester.address, [model.runtime_id])
    return VerifyPolicy(sample_rate=1.0, allowlist=allow, verifier_secret=b"v" * 32)

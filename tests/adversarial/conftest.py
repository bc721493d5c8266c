"""Module-scoped honest batch for the adversarial suite (no monkeypatching: explicit home)."""

from __future__ import annotations

import pytest
from tamper import Honest, build_honest


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory) -> Honest:
    """The sample tabular dataset attested in four partitions of 500 rows by an approved
    enclave key, in a fresh home; built once per test module."""
    return build_honest(tmp_path_factory.mktemp("adversarial"))

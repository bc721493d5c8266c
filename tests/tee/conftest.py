"""Fixtures of the TEE tests; the vectors themselves are in tee_vectors.py."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def dcap_qvl():
    return pytest.importorskip("dcap_qvl", reason="Intel DCAP needs dcap-qvl (ogkit[tee])")

"""Feature names recorded at publish: columns are bound by name, never by position."""

from __future__ import annotations

import pytest

from ogkit.errors import ConfigError, SchemaMismatchError
from ogkit.infer import run_verified_inference
from ogkit.samples import make_tabular
from ogkit.verify import Allowlist, VerifyPolicy, verify_batch

COLUMNS = [f"f{i}" for i in range(8)]


@pytest.fixture
def named(hub, owner, tabular_path):
    return hub.publish(
        tabular_path,
        name="named",
        version="1.0.0",
        price=1,
        signer=owner,
        features={"features": COLUMNS},
    )


def test_features_are_signed_and_kept(hub, named):
    assert named.features == {"features": tuple(COLUMNS)}
    again = hub.manifest("named@1.0.0")
    assert again.features == named.features
    again.check_signature()  # the names are covered by the owner's signature


def test_reversed_columns_bind_by_name_and_give_the_same_outputs(hub, named, enclave, requester):
    data = make_tabular(300, seed=4)
    reversed_data = data.select([*reversed(COLUMNS), "label"])
    kw = dict(attester=enclave, requester=requester, hub=hub, progress=False)
    a = run_verified_inference("named@1.0.0", data, job="a", **kw)
    b = run_verified_inference("named@1.0.0", reversed_data, job="b", **kw)
    assert a.outputs_frame()["label"].to_list() == b.outputs_frame()["label"].to_list()
    assert a.manifest.dataset_id == b.manifest.dataset_id  # the same inputs, committed alike
    allow = Allowlist().approve(enclave.address, [b.runtime_id])
    # A verifier holding the reversed file binds it by the signed names too.
    verdict = verify_batch(
        b, VerifyPolicy(sample_rate=0.1, allowlist=allow), hub=hub, dataset=reversed_data
    )
    assert verdict.passed, verdict.findings


def test_renamed_or_rebound_columns_are_refused(hub, named, enclave, requester):
    data = make_tabular(50, seed=4).rename({"f3": "tenure"})
    kw = dict(attester=enclave, requester=requester, hub=hub, progress=False)
    with pytest.raises(SchemaMismatchError, match="f3"):
        run_verified_inference("named@1.0.0", data, **kw)
    with pytest.raises(SchemaMismatchError, match="published with features"):
        run_verified_inference(
            "named@1.0.0",
            make_tabular(50, seed=4),
            input_map={"features": list(reversed(COLUMNS))},
            **kw,
        )


def test_features_that_do_not_fit_are_refused_at_publish(hub, owner, tabular_path):
    with pytest.raises(ConfigError, match="not an input"):
        hub.publish(
            tabular_path,
            name="bad",
            version="1.0.0",
            price=1,
            signer=owner,
            features={"nope": COLUMNS},
        )
    with pytest.raises(ConfigError, match="8 values a row, not 3"):
        hub.publish(
            tabular_path,
            name="bad",
            version="1.0.0",
            price=1,
            signer=owner,
            features={"features": ["a", "b", "c"]},
        )


def test_the_requester_commits_by_the_same_names(hub, named, enclave, requester):
    from ogkit.dataset import commit_dataset
    from ogkit.load import load_model

    data = make_tabular(120, seed=9)
    reversed_data = data.select([*reversed(COLUMNS), "label"])
    model = load_model("named@1.0.0", hub=hub)
    assert commit_dataset(data, model) == commit_dataset(reversed_data, model)
    batch = run_verified_inference(
        model,
        reversed_data,
        attester=enclave,
        requester=requester,
        hub=hub,
        commitment=commit_dataset(data, model),
        progress=False,
    )
    assert batch.row_count == 120

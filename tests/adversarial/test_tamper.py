"""Every tamper class an approved node can produce is refused and named by the verifier.

One parametrised test per (class, sample rate): a fresh tampered copy of the module's
honest batch is handed to ``verify_batch`` by artefact id (as a verifier or auditor gets
it), with the approved allowlist. The verdict must fail and name the class with one of
its reasons; ``verify_batch`` must return, not raise. A subset also goes through
``ogkit verify --json`` in a subprocess: non-zero exit, one JSON verdict, no traceback.
"""

from __future__ import annotations

import pytest
from tamper import (
    CLASSES,
    DATASET,
    Forge,
    Honest,
    cli_verify,
    cli_verify_args,
    parse_cli_json,
    verify,
)

import ogkit.verify as ogkit_verify

CASES = [pytest.param(c, rate, id=f"{c.name}@{rate:g}") for c in CLASSES for rate in c.rates]
CLI_CASES = [pytest.param(c, id=c.name) for c in CLASSES if c.cli]


_verify = verify


def test_suite_has_enough_classes():
    assert len(CLASSES) >= 45
    assert len({c.name for c in CLASSES}) == len(CLASSES)


def test_honest_batch_passes(honest: Honest):
    verdict = _verify(honest, honest.artifact_id, 1.0)
    assert verdict.passed, verdict.findings
    assert verdict.rows_checked == 2000


def test_identity_reseal_passes(honest: Honest):
    """The toolkit itself is faithful: re-hashing every records file, re-building every
    root and re-signing (a new timestamp) gives a batch that verifies."""
    f = Forge(honest, "identity")
    f.rewrite_all()
    f.seal(claim={"timestamp": f.m["claim"]["timestamp"] + 1})
    forged = f.publish()
    assert forged.artifact_id != honest.artifact_id
    assert f.m["batch_root"] == honest.manifest["batch_root"]
    verdict = _verify(honest, forged.artifact_id, 1.0)
    assert verdict.passed, verdict.findings


def test_cli_honest_batch_passes(honest: Honest):
    run = cli_verify(honest, honest.artifact_id)
    assert run.returncode == 0, run.stderr[-2000:]
    doc = parse_cli_json(run.stdout)
    assert doc["passed"] is True, doc.get("reasons")


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("cls", "rate"), CASES)
def test_tamper_class_is_caught(honest: Honest, cls, rate: float):
    forged = cls.apply(honest)
    if cls.isolate:  # it may kill the process that verifies it: not this one
        _check_cli(cls, cli_verify(honest, forged.artifact_id, rate))
        return
    verdict = _verify(honest, forged.artifact_id, rate)  # must return, never raise
    reasons = set(verdict.reasons())
    assert not verdict.passed, f"{cls.name} accepted at rate {rate}: {cls.doc}"
    assert reasons & cls.reasons, (
        f"{cls.name}: findings {sorted(reasons)} name none of {sorted(cls.reasons)}"
    )
    known = getattr(ogkit_verify, "REASONS", None)
    if known is not None:
        assert reasons <= set(known), f"undocumented reasons {sorted(reasons - set(known))}"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("cls", CLI_CASES)
def test_tamper_class_is_caught_by_cli(honest: Honest, cls):
    forged = cls.apply(honest)
    _check_cli(cls, cli_verify(honest, forged.artifact_id))


NOT_ISOLATED = [pytest.param(c, id=c.name) for c in CLASSES if not c.isolate]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cls", NOT_ISOLATED)
def test_every_class_is_caught_by_ogkit_verify_json(honest: Honest, cls, capsys):
    """Every class through the CLI's own ``main`` (``ogkit verify --json``), in this process
    (the subprocess runs above cover a sample): exit 1, one JSON verdict naming it."""
    from ogkit.cli import main

    forged = cls.apply(honest)
    capsys.readouterr()
    code = main(cli_verify_args(honest, forged.artifact_id))
    out, err = capsys.readouterr()
    assert code == 1, (cls.name, out[-1000:], err[-1000:])
    assert "Traceback" not in err, err[-2000:]
    doc = parse_cli_json(out)
    assert doc["passed"] is False and set(doc["reasons"]) & cls.reasons, (
        cls.name,
        sorted(doc["reasons"]),
    )


def _check_cli(cls, run) -> None:
    assert run.returncode >= 0, f"{cls.name}: the verifier died of signal {-run.returncode}"
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert run.returncode != 0, run.stdout[-2000:]
    try:
        doc = parse_cli_json(run.stdout)
    except ValueError:
        pytest.fail(f"no JSON verdict on stdout; stderr: {run.stderr[-1000:]!r}")
    assert doc["passed"] is False
    assert set(doc["reasons"]) & cls.reasons, sorted(doc["reasons"])


DATASET_CASES = [pytest.param(c, id=c.name) for c in CLASSES if c.reasons & DATASET]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cls", DATASET_CASES)
def test_unbound_inputs_never_pass_as_bound(honest: Honest, cls):
    """Without the requester's dataset a verifier cannot catch these; its verdict must
    then fail or say plainly that the inputs are not bound (``inputs_bound`` false)."""
    forged = cls.apply(honest)
    verdict = _verify(honest, forged.artifact_id, 1.0, with_dataset=False)
    assert not verdict.passed or getattr(verdict, "inputs_bound", True) is False


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cls", DATASET_CASES)
def test_data_classes_caught_with_requester_commitment(honest: Honest, cls):
    """Given only the requester's dataset commitment (computed by the requester with its
    own input binding), the verifier still refuses every data-substitution class."""
    forged = cls.apply(honest)
    verdict = _verify(honest, forged.artifact_id, 1.0, with_commitment=True)
    assert not verdict.passed, f"{cls.name} accepted: {cls.doc}"
    assert set(verdict.reasons()) & cls.reasons, sorted(verdict.reasons())

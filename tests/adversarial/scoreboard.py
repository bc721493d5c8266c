"""Print how the current ogkit fares against every tamper class (not a test).

    python tests/adversarial/scoreboard.py [--cli] [NAME_SUBSTRING ...]

One line per (class, rate): CAUGHT (fails, names an accepted reason), WRONG-REASON
(fails, names none of them), NOT-CAUGHT (the verdict passes) or CRASH (verify_batch
raised; the exception type is shown).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tamper import CLASSES, build_honest, cli_verify, verify


class _CliVerdict:
    def __init__(self, doc: dict) -> None:
        self.passed = doc["passed"]
        self._reasons = doc["reasons"]

    def reasons(self) -> dict:
        return self._reasons


def main(argv: list[str]) -> int:
    use_cli = "--cli" in argv
    wanted = [a for a in argv if not a.startswith("--")]
    with tempfile.TemporaryDirectory() as tmp:
        honest = build_honest(Path(tmp))
        counts: dict[str, int] = {}
        started = time.perf_counter()
        for cls in CLASSES:
            if wanted and not any(w in cls.name for w in wanted):
                continue
            for rate in cls.rates:
                try:
                    forged = cls.apply(honest)
                    if cls.isolate:
                        run = cli_verify(honest, forged.artifact_id, rate)
                        if run.returncode < 0:
                            raise RuntimeError(f"verifier killed by signal {-run.returncode}")
                        verdict = _CliVerdict(json.loads(run.stdout))
                    else:
                        verdict = verify(honest, forged.artifact_id, rate)
                    reasons = sorted(verdict.reasons())
                    if verdict.passed:
                        status = "NOT-CAUGHT"
                    elif set(reasons) & cls.reasons:
                        status = "CAUGHT"
                    else:
                        status = "WRONG-REASON"
                    extra = ",".join(reasons)
                except Exception as exc:  # the point: report, do not stop
                    status, extra = "CRASH", f"{type(exc).__name__}: {str(exc)[:120]}"
                counts[status] = counts.get(status, 0) + 1
                line = f"{status:<13}{cls.goal} {cls.name}@{rate:g}  {extra}"
                if use_cli and cls.cli and rate == 1.0:
                    run = cli_verify(honest, forged.artifact_id)
                    tb = "traceback" if "Traceback" in run.stderr else "no-traceback"
                    line += f"  | cli rc={run.returncode} {tb} {run.stdout[:1]!r}"
                print(line, flush=True)
        print(counts, f"{time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

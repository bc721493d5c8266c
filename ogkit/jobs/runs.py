"""Running a job once, and the retention that keeps its output folder tidy.

:func:`run_job` runs the notebook (:func:`ogkit.jobs.runner.run_notebook`) with the kernel
working in the repository root, writes ``<stem>-<run_id>.ipynb`` and ``.html`` to the
output folder and next to them ``<stem>-<run_id>.json``, the run summary (schema
``ogkit.pipeline.run.v1``, fields in :meth:`JobRun.to_dict`); a notebook with a
``summary_path`` parameter gets ``<stem>-<run_id>.result.json`` to write its own summary
to, which lands under ``result``. Then runs older than the retention are deleted
(:func:`prune_outputs`) — only files this job wrote, recognised by name and by their
summary's job name.
"""

from __future__ import annotations

import glob
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ogkit.jobs.runner import NotebookFailed, NotebookRun, new_run_id, run_notebook
from ogkit.jobs.spec import JobSpec

__all__ = [
    "CHECK_FAILURES",
    "EXIT_CHECK_FAILED",
    "EXIT_CRASHED",
    "RUN_SCHEMA",
    "JobRun",
    "prune_outputs",
    "run_job",
]

log = logging.getLogger(__name__)

RUN_SCHEMA = "ogkit.pipeline.run.v1"
# Files a run writes: <stem>-<run id>.<ext>, run ids as made by new_run_id().
_RUN_ID = r"\d{8}T\d{6}Z-[0-9a-f]{6}"
_EXTENSIONS = r"\.ipynb|\.html|\.result\.json|\.json"

# Exit codes of `ogkit pipeline run` (README, docs/cli-json.md): 0 the job passed;
# EXIT_CHECK_FAILED the notebook ran its checks and they failed (it raised one of
# CHECK_FAILURES, e.g. an audit with failing findings or fewer batches than expected);
# EXIT_CRASHED any other failure (a cell raised something else, the kernel died).
EXIT_CRASHED = 1
EXIT_CHECK_FAILED = 3
CHECK_FAILURES = ("AuditFailed", "VerificationFailed", "DataCheckFailed")


@dataclass
class JobRun:
    """One run of a job: its notebook run, the notebook's own summary, what was pruned."""

    job: str
    run_id: str
    ok: bool
    notebook_path: Path
    html_path: Path | None
    summary_path: Path
    output_dir: Path
    seconds: float
    parameters: dict[str, Any]
    started_at: str
    finished_at: str
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    deleted: list[Path] = field(default_factory=list)
    source: Path | None = None
    retention: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The run summary (``ogkit.pipeline.run.v1``); fields are only ever added:
        ``schema``, ``job``, ``run_id``, ``ok``, ``notebook``, ``html``, ``summary``,
        ``source``, ``output_dir``, ``started_at``, ``finished_at`` (ISO 8601 UTC),
        ``seconds``, ``parameters``, ``result`` (the notebook's summary dict or null),
        ``error`` (null, or ``cell_index``, ``ename``, ``evalue``, ``message``) and
        ``retention`` (``keep``: e.g. "30d" or null, ``deleted``: paths removed)."""
        return {
            "schema": RUN_SCHEMA,
            "job": self.job,
            "run_id": self.run_id,
            "ok": self.ok,
            "notebook": str(self.notebook_path),
            "html": str(self.html_path) if self.html_path else None,
            "summary": str(self.summary_path),
            "source": str(self.source) if self.source else None,
            "output_dir": str(self.output_dir),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "seconds": self.seconds,
            "parameters": self.parameters,
            "result": self.result,
            "error": self.error,
            "retention": {"keep": self.retention, "deleted": [str(p) for p in self.deleted]},
        }

    @property
    def check_failed(self) -> bool:
        """True when the notebook ran its checks and they failed (it raised one of
        :data:`CHECK_FAILURES`), rather than crashing."""
        return not self.ok and (self.error or {}).get("ename") in CHECK_FAILURES

    @property
    def exit_code(self) -> int:
        """0, :data:`EXIT_CHECK_FAILED` or :data:`EXIT_CRASHED`."""
        if self.ok:
            return 0
        return EXIT_CHECK_FAILED if self.check_failed else EXIT_CRASHED

    def raise_if_failed(self) -> None:
        if not self.ok:
            message = (self.error or {}).get("message") or f"job {self.job} failed"
            raise NotebookFailed(
                message,
                notebook_path=self.notebook_path,
                html_path=self.html_path,
                cell_index=(self.error or {}).get("cell_index"),
            )


def _read_result(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("the notebook's summary %s is unreadable (%s); leaving it out", path, exc)
        return None
    return doc if isinstance(doc, dict) else {"value": doc}


def _write_json(path: Path, doc: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str), encoding="utf-8")
    tmp.replace(path)


def run_job(
    spec: JobSpec,
    overrides: Mapping[str, Any] | None = None,
    *,
    home: str | Path,
    now: datetime | None = None,
    kernel_name: str | None = None,
) -> JobRun:
    """Run ``spec``'s notebook once with ``overrides`` on top of its parameters;
    ``home`` fills the ``{ogkit_home}`` placeholder.

    Writes the executed notebook, its HTML report and the run summary to the output
    folder, then prunes runs older than the retention. A failing notebook does not
    raise: the returned :class:`JobRun` has ``ok=False`` and ``error`` (call
    :meth:`JobRun.raise_if_failed` to turn it into :class:`NotebookFailed`); the partial
    notebook and its report are kept. Bad overrides raise :class:`ConfigError`.
    """
    started = now or datetime.now(UTC)
    run_id = new_run_id(started)
    parameters = spec.resolve_parameters(overrides, run_id=run_id, when=started, home=home)
    out_dir = spec.output_dir(started)
    stem = spec.notebook.stem
    result_path = out_dir / f"{stem}-{run_id}.result.json"
    if "summary_path" in spec.notebook_params and not parameters.get("summary_path"):
        parameters["summary_path"] = str(result_path)
    else:
        result_path = Path(parameters.get("summary_path") or result_path)

    error = None
    try:
        run: NotebookRun = run_notebook(
            spec.notebook,
            parameters,
            out_dir,
            run_id=run_id,
            kernel_name=kernel_name,
            cwd=spec.root,
        )
    except NotebookFailed as exc:
        if exc.run is None:  # nothing ran at all: no record to write
            raise
        run = exc.run
        error = {**(run.error or {}), "message": str(exc)}
        log.error("job %s: %s", spec.name, exc)
    finished = datetime.now(UTC)

    deleted = prune_outputs(spec, now=finished)
    job_run = JobRun(
        job=spec.name,
        run_id=run_id,
        ok=run.ok,
        notebook_path=run.notebook_path,
        html_path=run.html_path,
        summary_path=out_dir / f"{stem}-{run_id}.json",
        output_dir=out_dir,
        seconds=run.seconds,
        parameters=parameters,
        started_at=started.isoformat(timespec="seconds"),
        finished_at=finished.isoformat(timespec="seconds"),
        result=_read_result(result_path),
        error=error,
        deleted=deleted,
        source=spec.source,
        retention=spec.retention_text,
    )
    _write_json(job_run.summary_path, job_run.to_dict())
    log.info("job %s run %s: %s", spec.name, run_id, "ok" if run.ok else "FAILED")
    return job_run


def _output_dirs(spec: JobSpec) -> list[Path]:
    """Every folder the job's output template can have produced (one per {date})."""
    template = spec.output.format(name=glob.escape(spec.name), date="*")
    pattern = template if Path(template).is_absolute() else str(spec.root / template)
    return [Path(p) for p in sorted(glob.glob(pattern)) if Path(p).is_dir()]


def prune_outputs(spec: JobSpec, *, now: datetime | None = None) -> list[Path]:
    """Delete the job's runs older than its retention; return what was deleted.

    Only files named ``<notebook stem>-<run id>.{ipynb,html,json,result.json}`` count,
    and a run whose summary names another job is left alone (two jobs may share a
    folder and a notebook). A run's files go together, judged by its newest file.
    """
    if spec.retention is None:
        return []
    cutoff = (now or datetime.now(UTC)).timestamp() - spec.retention.total_seconds()
    pattern = re.compile(rf"^{re.escape(spec.notebook.stem)}-({_RUN_ID})({_EXTENSIONS})$")
    deleted: list[Path] = []
    for folder in _output_dirs(spec):
        runs: dict[str, list[Path]] = {}
        for path in folder.iterdir():
            if path.is_file() and (m := pattern.match(path.name)):
                runs.setdefault(m.group(1), []).append(path)
        for run_id, files in sorted(runs.items()):
            if max(p.stat().st_mtime for p in files) >= cutoff:
                continue
            summary = folder / f"{spec.notebook.stem}-{run_id}.json"
            if summary.is_file():
                try:
                    job = json.loads(summary.read_text(encoding="utf-8")).get("job")
                except (OSError, json.JSONDecodeError, AttributeError):
                    job = None
                if job != spec.name:
                    continue  # another job's run, or a summary we cannot read: not ours
            for path in sorted(files):
                path.unlink(missing_ok=True)
                deleted.append(path)
        if folder != spec.root and not any(folder.iterdir()) and "{date}" in spec.output:
            folder.rmdir()  # an emptied dated folder
    if deleted:
        log.info(
            "job %s: deleted %d file(s) older than %s", spec.name, len(deleted), spec.retention_text
        )
    return deleted

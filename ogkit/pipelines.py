"""Scheduled notebook jobs from YAML specs: check them, run them, keep their outputs tidy.

A job spec (``pipelines/*.yaml``)::

    name: demo                     # [a-z0-9][a-z0-9._-]*: names the job and its outputs
    description: the main job      # free text
    notebook: notebooks/verified_batch_inference.ipynb   # relative to the repo or the YAML
    parameters:                    # checked against the notebook's `parameters` cell
      rows: 100000
      job: "daily-{date}"          # placeholders in strings: {name} {date} {run_id} {ogkit_home}
    output: "runs/{name}/"         # placeholders {name} and {date} (UTC YYYY-MM-DD)
    schedule: "0 3 * * *"          # cron, 5 fields (or @hourly, @daily, @weekly …)
    retention: 30d                 # keep this job's runs 12h / 30d / 4w; absent: keep all

:meth:`JobSpec.load` reports every problem of a spec at once (a :class:`ConfigError`
listing them), before anything runs: unknown keys, a missing notebook, a parameter the
notebook does not have or of the wrong type, a bad cron field, a bad retention.

:func:`run_job` runs the notebook (:func:`ogkit.notebooks.run_notebook`) with the kernel
working in the repository root, writes ``<stem>-<run_id>.ipynb`` and ``.html`` to the
output folder and next to them ``<stem>-<run_id>.json``, the run summary (schema
``ogkit.pipeline.run.v1``, fields in :meth:`JobRun.to_dict`); a notebook with a
``summary_path`` parameter gets ``<stem>-<run_id>.result.json`` to write its own summary
to, which lands under ``result``. Then runs older than the retention are deleted — only
files this job wrote, recognised by name and by their summary's job name.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import re
import shlex
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from ogkit.settings import ogkit_home
from ogkit.errors import ConfigError
from ogkit.notebooks import (
    NotebookFailed,
    NotebookRun,
    new_run_id,
    notebook_parameters,
    run_notebook,
)

__all__ = [
    "RUN_SCHEMA",
    "JobRun",
    "JobSpec",
    "airflow_snippet",
    "cron_problems",
    "prune_outputs",
    "run_job",
    "schedule_line",
]

log = logging.getLogger(__name__)

RUN_SCHEMA = "ogkit.pipeline.run.v1"
KEYS = ("name", "description", "notebook", "parameters", "output", "schedule", "retention")
DEFAULT_OUTPUT = "runs/{name}"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_RETENTION = re.compile(r"^\s*(\d+)\s*([hdw])\s*$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}
OUTPUT_PLACEHOLDERS = ("name", "date")
PARAMETER_PLACEHOLDERS = ("name", "date", "run_id", "ogkit_home")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Files a run writes: <stem>-<run id>.<ext>, run ids as made by new_run_id().
_RUN_ID = r"\d{8}T\d{6}Z-[0-9a-f]{6}"
_EXTENSIONS = r"\.ipynb|\.html|\.result\.json|\.json"

# -- cron -------------------------------------------------------------------------------------
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_CRON_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),  # 0 and 7 are both Sunday
)
CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def _cron_value(text: str, low: int, high: int, names: Mapping[str, int]) -> int | None:
    value = names.get(text.lower()) if text.isalpha() else int(text) if text.isdigit() else None
    return value if value is not None and low <= value <= high else None


def _cron_field_problems(text: str, label: str, low: int, high: int, names: Mapping) -> list[str]:
    problems = []
    for item in text.split(","):
        base, slash, step = item.partition("/")
        if slash and (not step.isdigit() or int(step) < 1):
            problems.append(f"{label} {item!r}: the step after '/' must be a number >= 1")
        if base == "*":
            continue
        if slash and "-" not in base:
            problems.append(f"{label} {item!r}: a step needs '*' or a range before '/'")
            continue
        lo, dash, hi = base.partition("-")
        values = [_cron_value(lo, low, high, names)]
        if dash:
            values.append(_cron_value(hi, low, high, names))
        if any(v is None for v in values):
            allowed = f"{low}-{high}" + (" or a name like " + next(iter(names)) if names else "")
            problems.append(f"{label} {item!r}: use {allowed}, '*', ranges a-b, steps /n")
        elif dash and values[0] > values[1]:  # type: ignore[operator]
            problems.append(f"{label} {item!r}: the range runs backwards")
    return problems


def cron_problems(expression: str) -> list[str]:
    """Everything wrong with a 5-field cron expression (empty when it is valid)."""
    fields = CRON_MACROS.get(expression.strip().lower(), expression).split()
    if len(fields) != 5:
        return [
            f"schedule {expression!r} has {len(fields)} fields; cron needs 5 "
            "(minute hour day-of-month month day-of-week) or a macro like @daily"
        ]
    problems = []
    for text, (label, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        problems.extend(
            f"schedule: {p}" for p in _cron_field_problems(text, label, low, high, names)
        )
    return problems


# -- the spec ---------------------------------------------------------------------------------
def _repo_root(start: Path) -> Path:
    """The nearest folder at or above ``start`` that holds pyproject.toml or .git."""
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file() or (folder / ".git").exists():
            return folder
    return start


def _type_problem(name: str, value: Any, type_name: str) -> str | None:
    """Whether ``value`` fits the notebook's annotation ``type_name`` (known types only)."""
    checks: dict[str, tuple[type, ...]] = {
        "int": (int,),
        "float": (int, float),
        "str": (str,),
        "bool": (bool,),
        "dict": (dict,),
        "list": (list,),
    }
    wanted = checks.get(type_name)
    if wanted is None:
        return None
    # YAML's yes/true is a bool, and a bool is not a number or a string here.
    if isinstance(value, wanted) and (type_name == "bool" or not isinstance(value, bool)):
        return None
    return f"parameter {name}: the notebook wants {type_name}, got {type(value).__name__} {value!r}"


def _placeholder_problems(where: str, text: str, allowed: tuple[str, ...]) -> list[str]:
    unknown = sorted({m for m in _PLACEHOLDER.findall(text) if m not in allowed})
    if not unknown:
        return []
    return [
        f"{where}: unknown placeholder {', '.join('{' + u + '}' for u in unknown)}; "
        f"use {', '.join('{' + a + '}' for a in allowed)}"
    ]


def _check_parameters(
    values: Mapping[str, Any], declared: Mapping[str, Mapping[str, str]], notebook: Path
) -> list[str]:
    problems = []
    for name, value in values.items():
        if not isinstance(name, str):
            problems.append(f"parameter names must be strings, got {name!r}")
            continue
        if name not in declared:
            known = ", ".join(declared) or "none"
            problems.append(f"parameter {name}: {notebook.name} has no such parameter ({known})")
            continue
        if (p := _type_problem(name, value, declared[name]["type"])) is not None:
            problems.append(p)
        if isinstance(value, str):
            problems.extend(
                _placeholder_problems(f"parameter {name}", value, PARAMETER_PLACEHOLDERS)
            )
    return problems


def _output_problems(output: Any) -> list[str]:
    if not isinstance(output, str) or not output.strip():
        return ["output must be a folder path (placeholders {name}, {date})"]
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(output) if f is not None]
    except ValueError as exc:
        return [f"output {output!r}: {exc}"]
    bad = [f for f in fields if f not in OUTPUT_PLACEHOLDERS]
    if bad:
        return [
            f"output {output!r}: unknown placeholder(s) {', '.join(map(repr, bad))}; "
            "use {name} and {date}"
        ]
    return []


def _raise(problems: list[str], source: str) -> None:
    if problems:
        n = len(problems)
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(f"{n} problem{'s' if n != 1 else ''} in job spec {source}:\n{lines}")


@dataclass
class JobSpec:
    """A validated job spec; build it with :meth:`load` or :meth:`from_dict`."""

    name: str
    notebook: Path  # absolute
    parameters: dict[str, Any] = field(default_factory=dict)
    output: str = DEFAULT_OUTPUT  # template with {name} and {date}
    schedule: str | None = None  # 5-field cron (macros expanded)
    retention: timedelta | None = None
    retention_text: str | None = None
    description: str = ""
    source: Path | None = None  # the YAML file
    root: Path = field(default_factory=Path.cwd)  # repo root: relative paths, kernel cwd
    notebook_params: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, path: str | Path) -> JobSpec:
        """Read and validate a YAML job spec; every problem is reported at once."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read job spec {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"job spec {path} is not valid YAML: {exc}") from None
        return cls.from_dict(data, source=path.resolve())

    @classmethod
    def from_dict(
        cls, data: Any, *, source: Path | None = None, root: Path | None = None
    ) -> JobSpec:
        """Validate a parsed spec. Relative paths resolve against ``root`` (default: the
        repository holding ``source``, else the current folder)."""
        where = str(source or "<dict>")
        if not isinstance(data, Mapping):
            _raise([f"the spec must be a mapping of {', '.join(KEYS)}"], where)
        base = source.parent if source else Path.cwd()
        root = (root or _repo_root(base)).resolve()
        problems: list[str] = []
        unknown = sorted(str(k) for k in data if k not in KEYS)
        if unknown:
            problems.append(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(KEYS)}")

        name = data.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(
                f"name {name!r}: give lowercase letters, digits, '.', '_' or '-' "
                "(at most 64, starting with a letter or digit)"
            )
            name = str(name or "job")

        description = data.get("description") or ""
        if not isinstance(description, str):
            problems.append("description must be text")
            description = str(description)

        notebook: Path | None = None
        declared: dict[str, dict[str, str]] = {}
        nb_text = data.get("notebook")
        if not isinstance(nb_text, str) or not nb_text.strip():
            problems.append("notebook: give the path of an .ipynb file")
        else:
            candidates = [Path(nb_text)] if Path(nb_text).is_absolute() else [root / nb_text]
            if not Path(nb_text).is_absolute():
                candidates.append(base / nb_text)
            notebook = next((c.resolve() for c in candidates if c.is_file()), None)
            if notebook is None:
                tried = " or ".join(str(c) for c in dict.fromkeys(candidates))
                problems.append(f"notebook {nb_text}: no such file ({tried})")
            elif notebook.suffix != ".ipynb":
                problems.append(f"notebook {nb_text}: not an .ipynb file")
            else:
                try:
                    declared = notebook_parameters(notebook)
                except ConfigError as exc:
                    problems.append(f"notebook {nb_text}: {exc}")
                else:
                    if not declared:
                        problems.append(f"notebook {nb_text} has no cell tagged 'parameters'")

        parameters = data.get("parameters") or {}
        if not isinstance(parameters, Mapping):
            problems.append("parameters must be a mapping of notebook parameter names to values")
            parameters = {}
        elif notebook is not None and declared:
            problems.extend(_check_parameters(parameters, declared, notebook))

        output = data.get("output", DEFAULT_OUTPUT)
        problems.extend(_output_problems(output))
        if problems and not isinstance(output, str):
            output = DEFAULT_OUTPUT

        schedule = data.get("schedule")
        if schedule is not None:
            if not isinstance(schedule, str):
                problems.append(f"schedule {schedule!r}: give a cron expression as text")
                schedule = None
            else:
                cron = cron_problems(schedule)
                problems.extend(cron)
                schedule = " ".join(CRON_MACROS.get(schedule.strip().lower(), schedule).split())

        retention, retention_text = None, data.get("retention")
        if retention_text is not None:
            match = _RETENTION.match(str(retention_text))
            if not match or int(match.group(1)) == 0:
                problems.append(
                    f"retention {retention_text!r}: give a positive number of hours, days or "
                    "weeks, like 12h, 30d or 4w"
                )
            else:
                amount, unit = int(match.group(1)), match.group(2)
                retention = timedelta(**{_UNITS[unit]: amount})
                retention_text = f"{amount}{unit}"

        _raise(problems, where)
        assert notebook is not None
        return cls(
            name=name,
            notebook=notebook,
            parameters=dict(parameters),
            output=output,
            schedule=schedule,
            retention=retention,
            retention_text=retention_text,
            description=description.strip(),
            source=source,
            root=root,
            notebook_params=declared,
        )

    # -- where things go --------------------------------------------------------------------
    def with_output(self, output: str | Path) -> JobSpec:
        """The same job writing to ``output`` (a folder template, like the spec's)."""
        _raise(_output_problems(str(output)), f"{self.source or self.name} (output)")
        return dataclasses.replace(self, output=str(output))

    def output_dir(self, when: datetime | None = None) -> Path:
        """The output folder of a run started at ``when`` (UTC; default now)."""
        when = when or datetime.now(UTC)
        path = Path(self.output.format(name=self.name, date=when.strftime("%Y-%m-%d")))
        return path if path.is_absolute() else self.root / path

    def resolve_parameters(
        self, overrides: Mapping[str, Any] | None = None, *, run_id: str, when: datetime
    ) -> dict[str, Any]:
        """The spec's parameters with ``overrides`` on top, checked against the notebook
        and with the placeholders in string values filled in."""
        overrides = dict(overrides or {})
        _raise(
            _check_parameters(overrides, self.notebook_params, self.notebook),
            f"{self.source or self.name} (overrides)",
        )
        values = {
            "name": self.name,
            "date": when.strftime("%Y-%m-%d"),
            "run_id": run_id,
            "ogkit_home": str(ogkit_home()),
        }

        def fill(value: Any) -> Any:
            if not isinstance(value, str):
                return value
            return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), value)

        return {k: fill(v) for k, v in {**self.parameters, **overrides}.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "notebook": str(self.notebook),
            "parameters": self.parameters,
            "output": self.output,
            "schedule": self.schedule,
            "retention": self.retention_text,
            "source": str(self.source) if self.source else None,
            "root": str(self.root),
        }


# -- running ----------------------------------------------------------------------------------
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
    now: datetime | None = None,
    kernel_name: str | None = None,
) -> JobRun:
    """Run ``spec``'s notebook once with ``overrides`` on top of its parameters.

    Writes the executed notebook, its HTML report and the run summary to the output
    folder, then prunes runs older than the retention. A failing notebook does not
    raise: the returned :class:`JobRun` has ``ok=False`` and ``error`` (call
    :meth:`JobRun.raise_if_failed` to turn it into :class:`NotebookFailed`); the partial
    notebook and its report are kept. Bad overrides raise :class:`ConfigError`.
    """
    started = now or datetime.now(UTC)
    run_id = new_run_id(started)
    parameters = spec.resolve_parameters(overrides, run_id=run_id, when=started)
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


# -- scheduling -------------------------------------------------------------------------------
def _shell_path(template: str, name: str) -> str:
    """The output folder for a shell line, quoted, with {date} left to ``date`` at run
    time (``%`` escaped, as crontab wants)."""
    text = template.replace("{name}", name).rstrip("/") or "."
    pieces = text.split("{date}")
    return '"$(date -u +\\%F)"'.join(shlex.quote(p) if p else "" for p in pieces)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def schedule_line(spec: JobSpec, repo_root: str | Path | None = None) -> str:
    """The crontab line that runs the job on its schedule from ``repo_root`` (default:
    the spec's root), appending to ``<output>/cron.log``."""
    if not spec.schedule:
        raise ConfigError(f'job {spec.name} has no schedule: add e.g. `schedule: "0 3 * * *"`')
    root = Path(repo_root or spec.root).resolve()
    yaml_path = _relative(spec.source, root) if spec.source else f"pipelines/{spec.name}.yaml"
    out = _shell_path(spec.output, spec.name)
    return (
        f"{spec.schedule} cd {shlex.quote(str(root))} && mkdir -p {out} && "
        f".venv/bin/ogkit pipeline run {shlex.quote(yaml_path)} >> {out}/cron.log 2>&1"
    )


def _py(value: Any) -> str:
    """A Python literal for generated code: strings in double quotes, like ruff writes."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


def airflow_snippet(spec: JobSpec) -> str:
    """An Airflow DAG (as text) that runs the notebook with ``PapermillOperator``.

    Airflow's operator runs papermill only: no HTML report, retention or run summary —
    for those, run ``ogkit pipeline run`` from a BashOperator instead.
    """
    jinja = {
        "name": spec.name,
        "date": "{{ ds }}",
        "run_id": "{{ ts_nodash }}",
        "ogkit_home": str(ogkit_home()),
    }

    def fill(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return _PLACEHOLDER.sub(lambda m: jinja.get(m.group(1), m.group(0)), value)

    params = {k: fill(v) for k, v in spec.parameters.items()}
    out_template = spec.output.replace("{date}", "{{ ds }}").replace("{name}", spec.name)
    out_dir = Path(out_template) if Path(out_template).is_absolute() else spec.root / out_template
    output_nb = f"{str(out_dir).rstrip('/')}/{spec.notebook.stem}-{{{{ ts_nodash }}}}.ipynb"
    dag_id = "ogkit_" + re.sub(r"[^A-Za-z0-9_]", "_", spec.name)
    schedule = _py(spec.schedule)
    lines = [
        f'"""Airflow DAG for the ogkit job {spec.name!r}',
        "(written by `ogkit pipeline schedule --airflow`).",
        "",
        "The kernel runs in the worker's working directory: start the worker in",
        f"{spec.root} or make the path parameters absolute. For the HTML report, retention",
        f'and the run summary, run `ogkit pipeline run {spec.source or spec.name}` instead."""',
        "",
        "import pendulum",
        "from airflow import DAG",
        "from airflow.providers.papermill.operators.papermill import PapermillOperator",
        "",
        "with DAG(",
        f"    dag_id={_py(dag_id)},",
        f"    description={_py(spec.description or spec.name)},",
        f"    schedule={schedule},",
        '    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),',
        "    catchup=False,",
        '    tags=["ogkit"],',
        "):",
        "    PapermillOperator(",
        '        task_id="run_notebook",',
        f"        input_nb={_py(str(spec.notebook))},",
        f"        output_nb={_py(output_nb)},",
        "        parameters={",
        *(f"            {_py(k)}: {_py(v)}," for k, v in params.items()),
        "        },",
        '        kernel_name="ogkit",',
        "    )",
        "",
    ]
    return "\n".join(lines)

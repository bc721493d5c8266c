"""Job specs: the YAML that names a notebook, its parameters, where runs go and when.

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
``{ogkit_home}`` is filled in with the home the caller passes (the CLI: its settings).
"""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from ogkit.errors import ConfigError
from ogkit.jobs.cron import cron_problems, normalise_cron
from ogkit.jobs.runner import notebook_parameters

__all__ = [
    "DEFAULT_OUTPUT",
    "KEYS",
    "OUTPUT_PLACEHOLDERS",
    "PARAMETER_PLACEHOLDERS",
    "JobSpec",
    "fill_placeholders",
]

KEYS = ("name", "description", "notebook", "parameters", "output", "schedule", "retention")
DEFAULT_OUTPUT = "runs/{name}"
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_RETENTION = re.compile(r"^\s*(\d+)\s*([hdw])\s*$")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}
OUTPUT_PLACEHOLDERS = ("name", "date")
PARAMETER_PLACEHOLDERS = ("name", "date", "run_id", "ogkit_home")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def fill_placeholders(value: Any, values: Mapping[str, str]) -> Any:
    """``value`` with each ``{name}`` in it replaced by ``values[name]`` when it is a
    string (unknown placeholders stay as they are); any other value unchanged."""
    if not isinstance(value, str):
        return value
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), value)


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
                schedule = normalise_cron(schedule)

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
        self,
        overrides: Mapping[str, Any] | None = None,
        *,
        run_id: str,
        when: datetime,
        home: str | Path,
    ) -> dict[str, Any]:
        """The spec's parameters with ``overrides`` on top, checked against the notebook
        and with the placeholders in string values filled in (``{ogkit_home}``: ``home``)."""
        overrides = dict(overrides or {})
        _raise(
            _check_parameters(overrides, self.notebook_params, self.notebook),
            f"{self.source or self.name} (overrides)",
        )
        values = {
            "name": self.name,
            "date": when.strftime("%Y-%m-%d"),
            "run_id": run_id,
            "ogkit_home": str(home),
        }
        return {
            k: fill_placeholders(v, values) for k, v in {**self.parameters, **overrides}.items()
        }

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

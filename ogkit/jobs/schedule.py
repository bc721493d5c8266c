"""Schedules ogkit does not reimplement: a crontab line and an Airflow DAG for a job."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

from ogkit.errors import ConfigError
from ogkit.jobs.spec import JobSpec, fill_placeholders

__all__ = ["airflow_snippet", "schedule_line"]


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


def airflow_snippet(spec: JobSpec, *, home: str | Path) -> str:
    """An Airflow DAG (as text) that runs the notebook with ``PapermillOperator``;
    ``home`` fills the ``{ogkit_home}`` placeholder.

    Airflow's operator runs papermill only: no HTML report, retention or run summary —
    for those, run ``ogkit pipeline run`` from a BashOperator instead.
    """
    jinja = {
        "name": spec.name,
        "date": "{{ ds }}",
        "run_id": "{{ ts_nodash }}",
        "ogkit_home": str(home),
    }
    params = {k: fill_placeholders(v, jinja) for k, v in spec.parameters.items()}
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

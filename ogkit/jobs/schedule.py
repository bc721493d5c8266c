"""Schedules ogkit does not reimplement: a crontab line and an Airflow DAG for a job."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ogkit.errors import ConfigError
from ogkit.jobs.spec import JobSpec, fill_placeholders
from ogkit.settings import Settings

__all__ = ["airflow_snippet", "schedule_environment", "schedule_line"]

# cron starts jobs with next to no environment (no OGKIT_*, PATH=/usr/bin:/bin): the line
# carries what the job needs, as it is set where `ogkit pipeline schedule` runs.
_SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")


def schedule_environment(settings: Settings, ogkit: str | Path) -> dict[str, str]:
    """The variables a scheduled run needs, from ``settings`` as read now: ``OGKIT_HOME``
    (absolute), ``OGKIT_CHAIN``, ``OGKIT_DEVNET_PORT``, ``OGKIT_STORE``,
    ``OGKIT_SCHEDULER`` and ``OGKIT_ANVIL`` where set, and ``PATH`` with the folder of
    ``ogkit`` (the venv's entry point) and of ``node`` first. Never a key or password."""
    home = Path(settings.home).expanduser().resolve()
    env = {"OGKIT_HOME": str(home), "OGKIT_CHAIN": settings.chain}
    if settings.devnet_port is not None:
        env["OGKIT_DEVNET_PORT"] = str(settings.devnet_port)
    store = (
        settings.store
        if settings.store not in (str(home / "store"), str(settings.home / "store"))
        else None
    )
    for name, value in (
        ("OGKIT_STORE", store),
        ("OGKIT_SCHEDULER", settings.scheduler),
        ("OGKIT_ANVIL", settings.anvil),
    ):
        if value:
            env[name] = str(value)
    folders = [str(Path(ogkit).parent)]
    node = shutil.which("node")
    if node:
        folders.append(str(Path(node).parent))
    folders += _SYSTEM_PATH
    env["PATH"] = os.pathsep.join(dict.fromkeys(folders))
    return env


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


def schedule_line(
    spec: JobSpec,
    repo_root: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    ogkit: str | Path | None = None,
) -> str:
    """The crontab line that runs the job on its schedule from ``repo_root`` (default:
    the spec's root), appending to ``<output>/cron.log``.

    ``env`` (see :func:`schedule_environment`) is set on the command, so the job sees the
    same home, chain and devnet port under cron as where the line was made; ``ogkit``
    is the entry point to run (default: ``.venv/bin/ogkit`` in the root)."""
    if not spec.schedule:
        raise ConfigError(f'job {spec.name} has no schedule: add e.g. `schedule: "0 3 * * *"`')
    root = Path(repo_root or spec.root).resolve()
    yaml_path = _relative(spec.source, root) if spec.source else f"pipelines/{spec.name}.yaml"
    out = _shell_path(spec.output, spec.name)
    command = shlex.quote(str(ogkit)) if ogkit else ".venv/bin/ogkit"
    assignments = "".join(f"{k}={shlex.quote(v)} " for k, v in (env or {}).items())
    line = (
        f"cd {shlex.quote(str(root))} && mkdir -p {out} && "
        f"{assignments}{command} pipeline run {shlex.quote(yaml_path)} >> {out}/cron.log 2>&1"
    )
    # crontab turns an unescaped % into a newline; the {date} part is escaped already.
    line = re.sub(r"(?<!\\)%", r"\\%", line)
    return f"{spec.schedule} {line}"


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

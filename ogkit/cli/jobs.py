"""``ogkit pipeline run | schedule | show``: scheduled notebook jobs (ogkit.jobs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ogkit.cli.common import add_command, print_json
from ogkit.errors import ConfigError
from ogkit.settings import Settings

__all__ = ["parse_parameters", "register"]


def parse_parameters(items: list[str], declared: dict[str, dict[str, str]]) -> dict[str, Any]:
    """``-p key=value`` (repeatable): values read as YAML (``2000`` is an int, ``true`` a
    bool), except for parameters the notebook declares as ``str``, which stay text."""
    import yaml

    values: dict[str, Any] = {}
    problems = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(f"-p {item!r}: use KEY=VALUE")
            continue
        if declared.get(key, {}).get("type") == "str":
            values[key] = raw  # "1.0" or "2024-01-01" must not turn into a number or a date
            continue
        try:
            values[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            problems.append(f"-p {key}: {raw!r} is not a YAML value ({exc})")
    if problems:
        raise ConfigError("; ".join(problems))
    return values


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.jobs.runs import run_job
    from ogkit.jobs.spec import JobSpec

    spec = JobSpec.load(args.file)
    if args.output is not None:
        spec = spec.with_output(args.output)
    overrides = parse_parameters(args.parameter, spec.notebook_params)
    run = run_job(spec, overrides, home=settings.home)
    doc = run.to_dict()
    if args.json:
        print_json(doc)
    else:
        print(f"job       {run.job}  run {run.run_id}  {'ok' if run.ok else 'FAILED'}")
        print(f"notebook  {run.notebook_path}")
        if run.html_path:
            print(f"report    {run.html_path}")
        print(f"summary   {run.summary_path}")
        print(f"seconds   {run.seconds:.1f}")
        if run.deleted:
            print(f"retention deleted {len(run.deleted)} old file(s) (keep {run.retention})")
    if not run.ok:
        # The paths above name the partial notebook; the error line says what broke.
        # Exit 3: the job's checks ran and failed (e.g. the audit); 1: the notebook crashed.
        print(f"error: {(run.error or {}).get('message', 'the notebook failed')}", file=sys.stderr)
    return run.exit_code


def _schedule(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.jobs.schedule import airflow_snippet, schedule_environment, schedule_line
    from ogkit.jobs.spec import JobSpec

    spec = JobSpec.load(args.file)
    if args.airflow:
        text = airflow_snippet(spec, home=settings.home)
    else:
        # cron gives the job no OGKIT_* and a bare PATH: the line carries them, as set now,
        # and runs this environment's ogkit.
        ogkit = Path(sys.executable).parent / "ogkit"
        root = Path(args.repo or spec.root).resolve()
        if not ogkit.is_file():
            ogkit = root / ".venv" / "bin" / "ogkit"
        env = schedule_environment(settings, ogkit)
        text = schedule_line(spec, root, env=env, ogkit=ogkit) + "\n"
    if args.json:
        kind = "airflow" if args.airflow else "cron"
        print_json(
            {"schema": "ogkit.pipeline.schedule.v1", "job": spec.name, "kind": kind, "text": text}
        )
    else:
        print(text, end="")
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    from ogkit.jobs.spec import JobSpec

    spec = JobSpec.load(args.file)
    if args.json:
        print_json(
            {
                "schema": "ogkit.pipeline.spec.v1",
                **spec.to_dict(),
                "notebook_parameters": spec.notebook_params,
            }
        )
        return 0
    print(f"job         {spec.name}")
    if spec.description:
        print(f"            {spec.description}")
    print(f"notebook    {spec.notebook}")
    print(f"output      {spec.output}  (now: {spec.output_dir()})")
    print(f"schedule    {spec.schedule or '-'}")
    print(f"retention   {spec.retention_text or 'keep everything'}")
    print("parameters  (* set by the job)")
    width = max((len(n) for n in spec.notebook_params), default=0)
    for name, p in spec.notebook_params.items():
        mark = "*" if name in spec.parameters else " "
        value = repr(spec.parameters[name]) if name in spec.parameters else p["default"]
        help_text = f"  # {p['help']}" if p["help"] else ""
        print(f"  {mark} {name:{width}}: {p['type']} = {value}{help_text}")
    return 0


def register(groups) -> None:
    pipeline = groups.add_parser(
        "pipeline", help="scheduled notebook jobs (YAML specs in pipelines/)"
    ).add_subparsers(dest="command", required=True)

    p = add_command(
        pipeline, "run", _run, "run a job's notebook once: executed notebook + HTML report"
    )
    p.add_argument("file", type=Path, help="job spec (YAML)")
    p.add_argument(
        "-p",
        "--parameter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a notebook parameter (repeatable; values read as YAML)",
    )
    p.add_argument(
        "--output", help="output folder instead of the spec's ({name} and {date} work here too)"
    )

    p = add_command(pipeline, "schedule", _schedule, "print the crontab line")
    p.add_argument("file", type=Path, help="job spec (YAML)")
    p.add_argument("--airflow", action="store_true", help="print an Airflow DAG instead")
    p.add_argument("--repo", type=Path, default=None, help="repository root (default: found)")

    p = add_command(pipeline, "show", _show, "show a job spec and its notebook's parameters")
    p.add_argument("file", type=Path, help="job spec (YAML)")

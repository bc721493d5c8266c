"""Notebooks as jobs: run them with papermill, report them as code-free HTML, and run
them on a schedule from YAML specs.

- :mod:`ogkit.jobs.runner` — :func:`~ogkit.jobs.runner.run_notebook` (papermill, the
  ogkit kernel, :class:`~ogkit.jobs.runner.NotebookFailed` naming the failing cell) and
  :func:`~ogkit.jobs.runner.notebook_parameters`;
- :mod:`ogkit.jobs.html` — :func:`~ogkit.jobs.html.render_report`, the code-free report;
- :mod:`ogkit.jobs.steps` — the idempotent steps the shipped notebooks call;
- :mod:`ogkit.jobs.spec` — :class:`~ogkit.jobs.spec.JobSpec`, a checked YAML job spec
  (:mod:`ogkit.jobs.cron` checks its schedule);
- :mod:`ogkit.jobs.runs` — :func:`~ogkit.jobs.runs.run_job` (one run and its summary)
  and :func:`~ogkit.jobs.runs.prune_outputs` (retention);
- :mod:`ogkit.jobs.schedule` — a crontab line and an Airflow DAG for a job.
"""

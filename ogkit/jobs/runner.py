"""Run parameterised notebooks with papermill.

:func:`run_notebook` executes a notebook (its cell tagged ``parameters`` overridden by
the given values) into ``<output_dir>/<stem>-<run_id>.ipynb``: the executed notebook is
the audit record of the run, and papermill writes it even when a cell fails. A
standalone HTML report without code (``<stem>-<run_id>.html``, images embedded; see
:mod:`ogkit.jobs.html`) is rendered next to it — also after a failure, so the report
shows the error. A failing cell raises :class:`NotebookFailed`, which names the cell and
the notebook left behind. The kernel is this interpreter (:func:`ensure_kernel`), so a
notebook sees the same ogkit as the process that runs it.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ogkit.errors import ConfigError, NotebookFailed
from ogkit.jobs.html import render_report

__all__ = [
    "KERNEL_NAME",
    "NotebookFailed",
    "NotebookRun",
    "ensure_kernel",
    "new_run_id",
    "notebook_parameters",
    "run_notebook",
]

log = logging.getLogger(__name__)

KERNEL_NAME = "ogkit"
# tqdm.auto warns in every kernel without ipywidgets, and ogkit's steps import it (their
# bars are off in notebooks): keep that warning out of every report.
_KERNEL_ENV = {"PYTHONWARNINGS": "ignore:IProgress not found"}
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Cells papermill adds to the executed notebook; they are not cells of the source notebook.
_PAPERMILL_TAGS = {"injected-parameters", "papermill-error-cell-tag"}


@dataclass
class NotebookRun:
    """One execution of a notebook: where its outputs are and how it went."""

    notebook_path: Path  # the executed notebook (the audit record)
    html_path: Path | None  # the code-free report; None when report=False
    run_id: str
    parameters: dict[str, Any]
    seconds: float
    ok: bool
    source: Path | None = None  # the notebook that was run
    error: dict[str, Any] | None = field(default=None)  # cell_index, ename, evalue if failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "notebook": str(self.notebook_path),
            "html": str(self.html_path) if self.html_path else None,
            "source": str(self.source) if self.source else None,
            "run_id": self.run_id,
            "parameters": self.parameters,
            "seconds": self.seconds,
            "ok": self.ok,
            "error": self.error,
        }


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id: UTC timestamp plus a short random suffix."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


# -- the kernel -----------------------------------------------------------------------------
def _same_python(path: str) -> bool:
    try:
        return path == sys.executable or os.path.samefile(path, sys.executable)
    except OSError:
        return False


def ensure_kernel(name: str = KERNEL_NAME) -> str:
    """Make sure the Jupyter kernel ``name`` runs this interpreter; return ``name``.

    Installs the kernelspec into this environment (``sys.prefix``) the first time, and
    again if it points at another Python; falls back to the user's Jupyter folder when
    the environment is read-only.
    """
    from ipykernel.kernelspec import install
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    def current() -> bool:
        try:
            spec = KernelSpecManager().get_kernel_spec(name)
        except NoSuchKernel:
            return False
        return bool(spec.argv) and _same_python(spec.argv[0]) and spec.env == _KERNEL_ENV

    if current():
        return name
    display = f"Python (ogkit, {Path(sys.prefix).name})"
    try:
        install(kernel_name=name, display_name=display, prefix=sys.prefix, env=_KERNEL_ENV)
    except OSError:
        install(kernel_name=name, display_name=display, user=True, env=_KERNEL_ENV)
    if not current():
        # Another 'ogkit' kernelspec earlier on the Jupyter path shadows ours: take the
        # user-level slot, which comes first.
        install(kernel_name=name, display_name=display, user=True, env=_KERNEL_ENV)
    log.info("installed Jupyter kernel %r for %s", name, sys.executable)
    return name


# -- parameters -----------------------------------------------------------------------------
def notebook_parameters(notebook: str | Path) -> dict[str, dict[str, str]]:
    """The notebook's ``parameters`` cell as ``{name: {"type", "default", "help"}}``.

    ``type`` is the annotation (``int``, ``str`` …, ``None`` when there is none),
    ``default`` the default's source text and ``help`` the trailing comment, as
    papermill reads them. Empty when the notebook has no cell tagged ``parameters``.
    A notebook without kernel metadata is read as Python (ogkit's kernel).
    """
    import nbformat
    from papermill.translators import papermill_translators

    path = Path(notebook)
    if not path.is_file():
        raise ConfigError(f"notebook {path} does not exist")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # nbformat raises several kinds for a broken file
        raise ConfigError(f"cannot read notebook {path}: {exc}") from exc
    cell = next((c for c in nb.cells if "parameters" in c.metadata.get("tags", [])), None)
    if cell is None:
        return {}
    spec = nb.metadata.get("kernelspec", {})
    language = spec.get("language") or nb.metadata.get("language_info", {}).get("name")
    translator = papermill_translators.find_translator(
        spec.get("name") or "python3", language or "python"
    )
    return {
        p.name: {
            "type": str(p.inferred_type_name or "None"),
            "default": str(p.default),
            "help": str(p.help or ""),
        }
        for p in translator.inspect(cell)
    }


def _source_cell_index(cells: list[Any], executed_index: int) -> int:
    """Index in the source notebook of cell ``executed_index`` of the executed one."""
    added = sum(
        1
        for cell in cells[:executed_index]
        if _PAPERMILL_TAGS & set(cell.get("metadata", {}).get("tags", []))
    )
    return executed_index - added


# -- running --------------------------------------------------------------------------------
def _stamp_run(path: Path, run_id: str, source: Path) -> None:
    """Record the run id and source notebook in the executed notebook's metadata (the
    report's first line shows them)."""
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # a notebook cut off mid-write: leave it exactly as it is
        return
    nb.metadata["ogkit"] = {"run_id": run_id, "source": source.stem}
    nbformat.write(nb, path)


def _failed_cell(path: Path) -> tuple[int | None, str, str]:
    """(source cell index, ename, evalue) of the first cell with an error output."""
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # a notebook cut off mid-write: no cell to name
        return None, "", ""
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return _source_cell_index(nb.cells, i), out.get("ename", ""), out.get("evalue", "")
    # No error output (the kernel died, a cell timed out): blame the last cell that started.
    started = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        and cell.get("metadata", {}).get("papermill", {}).get("start_time")
    ]
    if started:
        return _source_cell_index(nb.cells, started[-1]), "", ""
    return None, "", ""


def _kernel_config(folder: str) -> Any:
    """Talk to the kernel over Unix sockets in a private folder rather than TCP ports
    that any local user can reach (and that make the kernel warn on every run)."""
    from traitlets.config import Config

    if sys.platform == "win32":
        return Config()
    return Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(folder, "kernel")}})


def run_notebook(
    notebook: str | Path,
    parameters: Mapping[str, Any],
    output_dir: str | Path,
    *,
    run_id: str | None = None,
    report: bool = True,
    kernel_name: str | None = None,
    cwd: str | Path | None = None,
    cell_timeout: float | None = None,
    progress: bool = False,
) -> NotebookRun:
    """Execute ``notebook`` with ``parameters`` into ``<output_dir>/<stem>-<run_id>.ipynb``
    and, with ``report``, render ``<stem>-<run_id>.html`` without code.

    ``cwd`` is the kernel's working directory (default: this process's), against which
    relative paths in parameters resolve. ``kernel_name`` defaults to :data:`KERNEL_NAME`,
    installed for this interpreter. A failing cell raises :class:`NotebookFailed` after
    the partial notebook and its report are written.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    source = Path(notebook)
    if not source.is_file():
        raise ConfigError(f"notebook {source} does not exist")
    run_id = run_id or new_run_id()
    if not _RUN_ID.match(run_id):
        raise ConfigError(f"run id {run_id!r} may only hold letters, digits, '.', '_' and '-'")
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{source.stem}-{run_id}.ipynb"
    html = out.with_suffix(".html") if report else None
    kernel = kernel_name or ensure_kernel()
    params = dict(parameters)
    log.info("running %s as %s (kernel %s)", source, out, kernel)
    started = time.perf_counter()
    failure: BaseException | None = None
    sockets = tempfile.mkdtemp(prefix="ogkit-kernel-")
    try:
        pm.execute_notebook(
            str(source),
            str(out),
            parameters=params,
            kernel_name=kernel,
            # ogkit's own kernel is Python, whatever the notebook's metadata says (or lacks).
            language="python" if kernel_name is None else None,
            log_output=False,
            progress_bar=progress,
            cwd=str(cwd) if cwd is not None else None,
            execution_timeout=cell_timeout,
            config=_kernel_config(sockets),
        )
    except PapermillExecutionError as exc:
        failure = exc
    except Exception as exc:  # the kernel died or would not start, a cell timed out …
        failure = exc
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    seconds = time.perf_counter() - started
    if out.exists():
        _stamp_run(out, run_id, source)
        if html is not None:
            render_report(out, html)
    elif failure is not None:
        raise NotebookFailed(
            f"notebook {source} did not start ({type(failure).__name__}: {failure}); "
            "no output notebook was written",
            notebook_path=out,
            html_path=None,
            cell_index=None,
        ) from failure
    run = NotebookRun(out, html, run_id, params, seconds, failure is None, source)
    if failure is None:
        log.info("notebook %s finished in %.1fs", out, seconds)
        return run

    cell_index, ename, evalue = _failed_cell(out)
    if isinstance(failure, PapermillExecutionError):
        ename, evalue = failure.ename or ename, failure.evalue or evalue
        where = f"cell {cell_index} (In [{failure.exec_count}])"
    else:
        ename, evalue = ename or type(failure).__name__, evalue or str(failure)
        where = f"cell {cell_index}" if cell_index is not None else "the kernel"
        if ename == "DeadKernelError":
            where += " (the kernel died while running it)" if cell_index is not None else ""
    run.error = {"cell_index": cell_index, "ename": ename, "evalue": evalue}
    left = f"the partially executed notebook is at {out}"
    if html is not None:
        left += f" and its report at {html}"
    raise NotebookFailed(
        f"notebook {source.name} failed in {where}: {ename}: {evalue}; {left}",
        notebook_path=out,
        html_path=html,
        cell_index=cell_index,
        ename=ename,
        evalue=evalue,
        run=run,
    ) from failure

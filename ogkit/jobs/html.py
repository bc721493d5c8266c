"""Code-free HTML reports of executed notebooks.

:func:`render_report` hides inputs and prompts and keeps outputs (tables, PNG charts,
errors) and markdown, with images embedded, so the file can be mailed or archived on its
own; a first line names the run and its parameters.
"""

from __future__ import annotations

import logging
from html import escape as html_escape
from pathlib import Path
from typing import Any

__all__ = ["render_report"]

# nbconvert's placeholder for images without alt text (see _with_alt_texts).
_PLACEHOLDER_ALT = 'alt="No description has been provided for this image"'
# nbconvert warns about every report's images before _with_alt_texts names them.
_NBCONVERT_LOG = logging.getLogger(f"{__name__}.nbconvert")
_NBCONVERT_LOG.setLevel(logging.ERROR)
# JupyterLab's HTML look without the two scripts it loads from a CDN (require.js for
# widgets, MathJax for LaTeX): a report must open offline and leak nothing when opened.
_REPORT_TEMPLATE = """\
{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
"""


def _run_banner(nb: Any, title: str) -> str:
    """A markdown line saying which run this is and with which parameters."""
    meta = nb.metadata.get("papermill", {})
    params = meta.get("parameters") or {}
    when = str(meta.get("start_time") or "")[:19].replace("T", " ")
    took = meta.get("duration")
    run_id = nb.metadata.get("ogkit", {}).get("run_id")
    lines = [f"**{title}**" + (f" — run `{run_id}`" if run_id else "")]
    if when:
        lines[0] += f", started {when} UTC"
    if isinstance(took, int | float):
        lines[0] += f", {took:.1f} s"
    if params:
        shown = ", ".join(f"`{k} = {v!r}`" for k, v in params.items())
        lines.append(f"Parameters: {shown}")
    return "\n\n".join(lines)


def _with_alt_texts(html: str, nb: Any) -> str:
    """Give output images the alt text stored with them (``show_png`` stores the chart's
    title): nbconvert's template ignores it and puts a placeholder in every ``<img>``."""
    alts = [
        (out.get("metadata", {}).get("image/png") or {}).get("alt")
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    ]
    parts = html.split(_PLACEHOLDER_ALT)
    if len(parts) - 1 != len(alts):  # markdown images in between: cannot pair them up
        return html
    out = [parts[0]]
    for alt, rest in zip(alts, parts[1:], strict=True):
        out.append(f'alt="{html_escape(alt)}"' if alt else _PLACEHOLDER_ALT)
        out.append(rest)
    return "".join(out)


def render_report(notebook_path: str | Path, html_path: str | Path | None = None) -> Path:
    """Render an executed notebook as standalone HTML without code.

    Inputs and prompts are hidden, outputs (tables, PNG charts, errors) and markdown
    stay; images are embedded, so the file can be mailed or archived on its own. A
    first line names the run and its parameters (which the hidden code would have shown).
    """
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    src = Path(notebook_path)
    dest = Path(html_path) if html_path else src.with_suffix(".html")
    nb = nbformat.read(src, as_version=4)
    title = nb.metadata.get("ogkit", {}).get("source") or src.stem
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(_run_banner(nb, title)))
    exporter = HTMLExporter(
        extra_loaders=[jinja2.DictLoader({"ogkit_report.html.j2": _REPORT_TEMPLATE})],
        template_file="ogkit_report.html.j2",
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
        log=_NBCONVERT_LOG,
    )
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    body = _with_alt_texts(body, nb)
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(dest)
    return dest

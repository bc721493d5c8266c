"""Putting frames and charts into reports: HTML tables, PNG and HTML files, and images a
notebook stores, so the code-free HTML report carries the picture itself rather than
JavaScript that needs a live kernel or a CDN."""

from __future__ import annotations

import html
import logging
import math
import re
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ogkit.report.common import opg_text, short_id

if TYPE_CHECKING:
    import polars as pl

    from ogkit.report.charts import Chart

__all__ = ["chart_png", "save_chart", "show_png", "table"]

log = logging.getLogger(__name__)

_HASH = re.compile(r"^0x[0-9a-fA-F]{44,}$")  # longer than an address: a 32-byte id or hash


def _cell(value: Any, shorten: bool) -> str:
    if value is None:
        return '<span style="color:#999">–</span>'
    if isinstance(value, bool):
        return "✓" if value else "✗"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else "NaN" if math.isnan(value) else f"{value:.6g}"
    text = str(value)
    if text.startswith("0x") and len(text) >= 42:
        shown = short_id(text, 8) if shorten and _HASH.match(text) else text
        nowrap = 'style="white-space:nowrap"'  # an id split over two lines reads as two
        return f'<code {nowrap} title="{html.escape(text)}">{html.escape(shown)}</code>'
    return html.escape(text)


def table(frame: pl.DataFrame, *, shorten: bool = True, max_rows: int = 50) -> Any:
    """A polars frame as a plain HTML table for reports (an ``IPython.display.HTML``).

    Unlike polars' own notebook view it shows every column and up to ``max_rows`` rows
    (then says how many more), no dtype row, and, with ``shorten``, 32-byte hex ids as
    ``0x12345678…abcd`` (the full value is the cell's tooltip) so wide tables still fit
    a page. Addresses are shown whole.
    """
    from IPython.display import HTML

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    # *_opg columns hold decimal OPG: shown with the unit, never as 1e-05.
    money = [str(c).endswith("_opg") and frame.schema[c].is_numeric() for c in frame.columns]
    rows = [
        "<tr>"
        + "".join(
            f"<td>{html.escape(opg_text(v)) if m and v is not None else _cell(v, shorten)}</td>"
            for v, m in zip(row, money, strict=True)
        )
        + "</tr>"
        for row in frame.head(max_rows).iter_rows()
    ]
    more = frame.height - max_rows
    if more > 0:
        rows.append(
            f'<tr><td colspan="{max(1, frame.width)}"><em>… {more:,} more rows</em></td></tr>'
        )
    body = "".join(rows) or f'<tr><td colspan="{max(1, frame.width)}"><em>no rows</em></td></tr>'
    return HTML(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def chart_png(chart: Chart, *, scale: float = 2.0) -> bytes:
    """The chart as PNG bytes, rendered by vl-convert (no browser, no network)."""
    return _vl_png(chart.to_dict(), scale)


def _vl_png(spec: Mapping[str, Any], scale: float) -> bytes:
    import vl_convert as vlc

    return vlc.vegalite_to_png(dict(spec), scale=scale)


def _png_width(png: bytes) -> int:
    """Pixel width from the PNG header (IHDR), to show a scale-2 image at its CSS size."""
    return struct.unpack(">I", png[16:20])[0] if png[:8] == b"\x89PNG\r\n\x1a\n" else 0


def save_chart(
    chart: Chart, path_without_suffix: str | Path, *, scale: float = 2.0, inline: bool = True
) -> dict[str, Path]:
    """Write ``<path>.png`` (vl-convert, ``scale`` × pixels) and ``<path>.html``.

    The HTML page carries the Vega JavaScript inline (``inline=True``) so it opens
    offline; ``inline=False`` loads it from a CDN instead and is much smaller.
    Returns ``{"png": Path, "html": Path}``.
    """
    base = Path(path_without_suffix)
    base.parent.mkdir(parents=True, exist_ok=True)
    png, html = base.with_name(base.name + ".png"), base.with_name(base.name + ".html")
    png.write_bytes(chart_png(chart, scale=scale))
    chart.save(str(html), inline=inline)
    log.info("saved chart %s (.png, .html)", base)
    return {"png": png, "html": html}


def show_png(chart: Chart, *, scale: float = 2.0) -> Any:
    """An ``IPython.display.Image`` of the chart, shown at its natural size.

    Display it (or leave it as a cell's last value) and the PNG is stored in the executed
    notebook, so reports made from the notebook show it without JavaScript.
    """
    from IPython.display import Image

    spec = chart.to_dict()
    png = _vl_png(spec, scale)
    width = _png_width(png)
    return Image(
        data=png,
        format="png",
        width=int(width / scale) if width else None,
        alt=_title_of(spec) or "chart",
    )


def _title_of(spec: Mapping[str, Any]) -> str:
    """The chart's title text (from the top level or its first titled layer)."""
    for part in [spec, *spec.get("layer", []), *spec.get("hconcat", []), *spec.get("vconcat", [])]:
        title = part.get("title")
        if isinstance(title, Mapping):
            title = title.get("text")
        if isinstance(title, list):
            title = " ".join(str(t) for t in title)
        if title:
            return str(title)
    return ""

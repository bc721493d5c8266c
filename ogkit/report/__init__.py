"""Charts and tables for reports: polars frames in, altair charts out.

``from ogkit import report`` gives all of it; the modules split it by job:

- :mod:`ogkit.report.frames` — **frame builders** that read a batch, verdicts or hub
  entries and return a polars frame: :func:`batch_frame`, :func:`run_stats_frame`,
  :func:`reexecution_errors`, :func:`verdicts_frame`, :func:`group_findings` (one
  row per reason and partition, with a count and the first rows), :func:`receipts_frame`,
  :func:`hub_frame`;
- :mod:`ogkit.report.events` — the frames read from the settlement contract's events:
  :func:`payments_frame`, :func:`slashes_frame`;
- :mod:`ogkit.report.charts` — **charts** that take such a frame (its columns are listed
  in each docstring) and return an altair chart, touching nothing else:
  :func:`verification_status_chart`, :func:`reexecution_error_chart`,
  :func:`throughput_chart`, :func:`gas_chart`, :func:`payments_chart`,
  :func:`slashing_chart`, :func:`model_prices_chart`. An empty frame gives a chart that
  says so instead of failing;
- :mod:`ogkit.report.display` — :func:`table` shows a frame as a plain HTML table (every
  column, short ids); :func:`save_chart` writes a chart as PNG (rendered by vl-convert, no
  browser) and as a standalone HTML page; :func:`show_png` returns an
  ``IPython.display.Image`` so that an executed notebook, and the code-free HTML report
  made from it, carry the picture itself rather than JavaScript that needs a live kernel
  or a CDN.

OPG amounts are shown as decimal OPG (base units / 10**18); the exact amounts stay on chain.
:func:`opg_text` writes one with its unit (``0.001 OPG``); :func:`table` does so for every
``*_opg`` column.
"""

from ogkit.report.charts import (
    gas_chart,
    model_prices_chart,
    payments_chart,
    reexecution_error_chart,
    slashing_chart,
    throughput_chart,
    verification_status_chart,
)
from ogkit.report.common import opg_text
from ogkit.report.display import chart_png, save_chart, show_png, table
from ogkit.report.events import payments_frame, slashes_frame
from ogkit.report.frames import (
    batch_frame,
    group_findings,
    hub_frame,
    receipts_frame,
    reexecution_errors,
    run_stats_frame,
    verdicts_frame,
)

__all__ = [
    "batch_frame",
    "chart_png",
    "gas_chart",
    "group_findings",
    "hub_frame",
    "model_prices_chart",
    "opg_text",
    "payments_chart",
    "payments_frame",
    "receipts_frame",
    "reexecution_error_chart",
    "reexecution_errors",
    "run_stats_frame",
    "save_chart",
    "show_png",
    "slashes_frame",
    "slashing_chart",
    "table",
    "throughput_chart",
    "verdicts_frame",
    "verification_status_chart",
]

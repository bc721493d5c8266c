"""The ``ogkit`` command line. It prints; the library only logs.

One module per command group (``keys``, ``hub``, ``infer``, ``verify`` with ``receipt``
and ``allowlist``, ``demo``, ``chain``, ``settle``, ``audit``, ``stake``, ``jobs`` for
``pipeline``), what they share in :mod:`ogkit.cli.common`, and the parser with
:func:`main` in :mod:`ogkit.cli.app`. The CLI is the edge: it reads
:meth:`ogkit.settings.Settings.from_env` once (with ``--home``/``--store`` on top) and
passes home, store, chain and scheduler into the steps.

Every ``--json`` document carries a ``schema`` field (e.g. ``ogkit.hub.list.v1``)
and keeps its fields stable within that schema; docs/cli-json.md lists them.
Errors become one line on stderr and exit status 1 (``--debug`` shows the
traceback); bad usage exits with 2.
"""

from ogkit.cli.app import main

__all__ = ["main"]

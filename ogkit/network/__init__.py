"""The network's roles as processes that meet only through the chain and the store.

- :mod:`ogkit.network.verifier` — the verifier daemon (``ogkit verifier run``)
- :mod:`ogkit.network.challenger` — challenges, one row or watching (``ogkit challenge``)
- :mod:`ogkit.network.supervisor` — ``ogkit network up | down | status``
- :mod:`ogkit.network.daemon` and :mod:`ogkit.network.cursor` — the shared poll loop and
  the durable cursor

See docs/network.md.
"""

__all__: list[str] = []

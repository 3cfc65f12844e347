"""Prometheus metrics: what the gateway decided and how each side did, per route template.

``[metrics] enabled = true`` (the default) builds one ``Metrics`` per worker; the request path
records into it cheaply (``recorder``), and a scrape renders ``Metrics.registry`` in the text
format: at ``/_gateway/metrics`` (admin-only), and at ``[metrics] listen`` without
authentication when set. The family names and labels are in ``gateway.metrics.families``::

    metrics = Metrics()                  # Metrics(multiprocess_dir=...) under --workers N
    metrics.registry                     # a prometheus_client CollectorRegistry
    metrics.render()                     # bytes, CONTENT_TYPE
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.metrics.families import LATENCY_BUCKETS, UNMATCHED, Families
    from gateway.metrics.runtime import CONTENT_TYPE, Metrics

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "UNMATCHED", "Families", "Metrics"]

#: Where each name lives. Loaded on first access (PEP 562): the ``serve --workers N``
#: supervisor imports ``gateway.metrics.multiproc`` and ``listener``, not the registry.
_LOCATIONS = {
    "CONTENT_TYPE": "gateway.metrics.runtime",
    "LATENCY_BUCKETS": "gateway.metrics.families",
    "UNMATCHED": "gateway.metrics.families",
    "Families": "gateway.metrics.families",
    "Metrics": "gateway.metrics.runtime",
}

if not TYPE_CHECKING:  # hidden from type checkers, which would accept any name (typos too)

    def __getattr__(name: str) -> Any:
        if name not in _LOCATIONS:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(_LOCATIONS[name]), name)
        globals()[name] = value  # the next access skips this function
        return value

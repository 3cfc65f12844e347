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

from gateway.metrics.families import LATENCY_BUCKETS, UNMATCHED, Families
from gateway.metrics.runtime import CONTENT_TYPE, Metrics

__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "UNMATCHED", "Families", "Metrics"]

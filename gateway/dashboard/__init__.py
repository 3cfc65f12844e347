"""The migration dashboard at ``/_gateway/`` (README "Dashboard") and the numbers behind it.

- ``traffic``: readings of the metrics registry, their history, windows (share of the new side,
  rate, error rate, p50/p99 per side);
- ``sampler``: reads the registry every few seconds, in each worker;
- ``overview``: route states, the route table, shadow results, breakers and fallbacks as JSON
  (also what ``gateway status`` prints);
- ``page`` and ``static/``: the page, its one script and one style sheet;
- ``app``: the endpoints, admin-only, CSRF-checked, in front of the admin API.

The registry is ``gateway.metrics.Metrics`` (every worker's numbers under ``--workers N``).
"""

from gateway.dashboard.app import Dashboard, DashboardApp

__all__ = ["Dashboard", "DashboardApp"]

"""Route-level feature flags: which side serves a flagged route, decided per request.

- ``model``: flag specs, the shared state, decisions with reasons.
- ``evaluate``: the pure decision (sticky percentage buckets, targeting, override, kill switch).
- ``stores``: where the live state lives (a local file, Redis) and how changes arrive.
- ``runtime``: the in-memory snapshot the request path reads, kept fresh by a store watcher.
"""

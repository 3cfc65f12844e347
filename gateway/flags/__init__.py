"""Route-level feature flags: which side serves a flagged route, decided per request.

- ``model``: flag specs, the shared state, decisions with reasons.
- ``evaluate``: the pure decision (sticky percentage buckets, targeting, override, kill switch).
- ``stores``: the flag store, a view over the storage backend (``gateway.storage``: a local
  file, Redis, memory) where the live state lives and from which changes arrive.
- ``build``: the storage backend and the runtime, from ``[flags]``.
- ``runtime``: the in-memory snapshot the request path reads, kept fresh by a store watcher.
"""

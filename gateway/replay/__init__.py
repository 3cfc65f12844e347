"""Parity replays: recorded samples sent in process to both sides of a route and compared
(``gateway parity``, ``gateway.testing``, the pytest plugin)."""

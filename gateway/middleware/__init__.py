"""Plain ASGI middleware: each wraps ``send`` to observe responses and keeps state per request."""

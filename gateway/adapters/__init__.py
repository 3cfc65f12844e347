"""The seams to the two kinds of backend: the legacy WSGI app and the new ASGI services."""

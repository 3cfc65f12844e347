"""The catalog service: the bookstore's ``/api/books`` routes, on FastAPI.

from new_services.catalog import create_app
"""

from new_services.catalog.app import create_app

__all__ = ["create_app"]

"""The accounts service: ``GET /api/me``, on FastAPI.

from new_services.accounts import create_app
"""

from new_services.accounts.app import create_app

__all__ = ["create_app"]

"""The demo FastAPI services that take over legacy bookstore routes, URL for URL."""

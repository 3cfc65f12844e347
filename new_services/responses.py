"""JSON rendered byte for byte as the legacy Flask app renders it.

Flask's default JSON provider sorts keys, escapes non-ASCII, uses compact separators and ends the
body with a newline. A route that moves to a service keeps those bytes too, so nothing that
compares or caches responses (clients, ETags, shadow diffs) sees a change::

    app = FastAPI(default_response_class=FlaskJSONResponse)
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse


class FlaskJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=True, sort_keys=True, separators=(",", ":"))
        return f"{text}\n".encode()

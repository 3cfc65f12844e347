"""The OpenAPI 3.0 description of the gateway's own endpoints, served at ``/_gateway/openapi.json``.

Written by hand, as data: the admin app (``gateway.admin``) is plain ASGI, so nothing generates
it. ``tests/test_admin_schema.py`` runs schemathesis against a real server with this schema, so
the document and the endpoints cannot drift apart unnoticed::

    from gateway.admin_openapi import ADMIN_OPENAPI
"""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}
_STRINGS = {"type": "array", "items": {"type": "string"}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    described = {
        400: "the request is malformed",
        401: "no valid credentials",
        403: "the caller lacks an admin role",
        404: "no such flag",
        405: "method not allowed",
        413: "the body is too large",
        503: "the flag store is unavailable",
    }
    return {str(status): _json(_ERROR, described[status]) for status in statuses}


#: Any endpoint may answer 400: the gateway refuses an ambiguous path, a host it does not serve
#: or a malformed header before the endpoint runs.
_ADMIN_ERRORS = (400, 401, 403)
_FLAG_FIELDS = {
    "mode": {"type": "string", "enum": ["legacy", "new", "canary", "shadow"]},
    "percentage": {"type": "integer", "minimum": 0, "maximum": 100},
    "allow_subjects": _STRINGS,
    "deny_subjects": _STRINGS,
    "allow_roles": _STRINGS,
    "deny_roles": _STRINGS,
}
_FLAG_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]{0,63}$"},
}

ADMIN_OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "flask-fastapi-gateway: gateway endpoints",
        "version": "1",
        "description": "Health, readiness, the route inventory and the admin API "
        "(flags and the kill switch). Errors are JSON with the request id.",
    },
    "security": [{"bearer": []}, {"apiKey": []}, {"session": []}],
    "paths": {
        "/_gateway/health": {
            "get": {
                "summary": "The process is alive",
                "security": [],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["status"],
                            "properties": {"status": {"type": "string", "enum": ["ok"]}},
                        },
                        "alive",
                    ),
                    **_errors(400),
                },
            }
        },
        "/_gateway/ready": {
            "get": {
                "summary": "Every service lifespan has started",
                "security": [],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/Readiness"}, "ready"),
                    "503": _json({"$ref": "#/components/schemas/Readiness"}, "not ready"),
                    **_errors(400),
                },
            }
        },
        "/_gateway/routes": {
            "get": {
                "summary": "The route inventory: every Flask rule and service route",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["routes"],
                            "properties": {
                                "routes": {"type": "array", "items": {"type": "object"}}
                            },
                        },
                        "the inventory",
                    ),
                    **_errors(*_ADMIN_ERRORS),
                },
            }
        },
        "/_gateway/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": _json({"type": "object"}, "the OpenAPI document"),
                    **_errors(*_ADMIN_ERRORS),
                },
            }
        },
        "/_gateway/api/flags": {
            "get": {
                "summary": "Every flag's effective state, the kill switch and the store",
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/FlagsView"}, "the flags"),
                    **_errors(*_ADMIN_ERRORS),
                },
            }
        },
        "/_gateway/api/flags/{name}": {
            "parameters": [_FLAG_NAME],
            "get": {
                "summary": "One flag",
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/NamedFlag"}, "the flag"),
                    **_errors(*_ADMIN_ERRORS, 404),
                },
            },
            "put": {
                "summary": "Change a flag; fields left out keep their value",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": _FLAG_FIELDS,
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/NamedFlag"}, "the new state"),
                    **_errors(*_ADMIN_ERRORS, 404, 413, 503),
                },
            },
        },
        "/_gateway/api/shadow": {
            "get": {
                "summary": "Shadow results of every live worker, added up",
                "responses": {
                    "200": _json({"type": "object"}, "the results"),
                    **_errors(*_ADMIN_ERRORS),
                },
            }
        },
        "/_gateway/api/breakers": {
            "get": {
                "summary": "Each guarded route's circuit breaker, per worker",
                "responses": {
                    "200": _json({"type": "object"}, "the breakers"),
                    **_errors(*_ADMIN_ERRORS),
                },
            }
        },
        "/_gateway/api/kill-switch": {
            "get": {
                "summary": "Whether every flagged route is sent to legacy",
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/KillSwitch"}, "the switch"),
                    **_errors(*_ADMIN_ERRORS),
                },
            },
            "put": {
                "summary": "Throw or lift the kill switch",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/KillSwitch"}}
                    },
                },
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/KillSwitch"}, "the switch"),
                    **_errors(*_ADMIN_ERRORS, 413, 503),
                },
            },
        },
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "session": {"type": "apiKey", "in": "cookie", "name": "session"},
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "request_id"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["status", "message"],
                        "properties": {
                            "status": {"type": "integer"},
                            "message": {"type": "string"},
                        },
                    },
                    "request_id": {"type": "string", "nullable": True},
                },
            },
            "Readiness": {
                "type": "object",
                "required": ["status"],
                "properties": {
                    "status": {"type": "string", "enum": ["ready", "starting", "shutting down"]}
                },
            },
            "Flag": {
                "type": "object",
                "required": [*_FLAG_FIELDS, "source"],
                "properties": {
                    **_FLAG_FIELDS,
                    "source": {"type": "string", "enum": ["store", "default"]},
                },
            },
            "NamedFlag": {
                "allOf": [
                    {"$ref": "#/components/schemas/Flag"},
                    {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}},
                    },
                ]
            },
            "FlagsView": {
                "type": "object",
                "required": ["version", "kill_switch", "store", "store_loaded", "flags"],
                "properties": {
                    "version": {"type": "integer"},
                    "kill_switch": {"type": "boolean"},
                    "store": {"type": "string"},
                    "store_loaded": {"type": "boolean"},
                    "flags": {
                        "type": "object",
                        "additionalProperties": {"$ref": "#/components/schemas/Flag"},
                    },
                },
            },
            "KillSwitch": {
                "type": "object",
                "required": ["enabled"],
                "properties": {"enabled": {"type": "boolean"}},
            },
        },
    },
}

"""The OpenAPI 3.1 document of the public API (served at ``/api/openapi.json``; a test keeps it true)."""

from __future__ import annotations

from typing import Any

from shared import __version__
from shared.api.params import (
    DEFAULT_MESSAGE_FIELDS,
    DEFAULT_TOP,
    MAX_CURSOR,
    MAX_MESSAGE_ID,
    MAX_TOP,
    MESSAGE_FIELDS,
    MESSAGE_RESOURCE_FIELDS,
)

_ERROR = {"$ref": "#/components/schemas/Error"}
_FUNCTION_KEY: list[dict[str, list[str]]] = [{"functionKey": []}]


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


_CACHE_HEADERS = {
    "X-Cache": {
        "description": (
            "which tier answered; miss whenever the request called Graph (e.g. to resolve a UPN); "
            "bypass: from Graph while the cache's Table Storage is unavailable; "
            "mirror: from the directory mirror (no Graph call)"
        ),
        "schema": {"type": "string", "enum": ["hit-l1", "hit-l2", "miss", "bypass", "stale", "mirror"]},
    },
    "ETag": {"schema": {"type": "string"}},
    "Cache-Control": {"schema": {"type": "string"}},
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds", "schema": {"type": "integer", "minimum": 1}}}
_ERRORS = {
    "304": {"description": "not modified (If-None-Match matched the ETag)"},
    "400": _json(_ERROR, "invalid user id or parameter"),
    "401": {"description": "missing or wrong function key"},
    "404": _json(_ERROR, "Graph says the user or mailbox does not exist"),
    "503": _json(_ERROR, "Graph is throttling or unavailable and nothing stale can be served", _RETRY_AFTER),
}
_USER_ID = {
    "name": "user_id",
    "in": "path",
    "required": True,
    "description": "a GUID or a userPrincipalName",
    "schema": {"type": "string", "maxLength": 256},
}
_IF_NONE_MATCH = {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}}


def _webhook(operation_id: str, summary: str) -> dict[str, Any]:
    """A Graph webhook: the validation handshake, or a POST of notifications that are persisted, then 202."""
    return {
        "post": {
            "operationId": operation_id,
            "summary": summary,
            "security": [],
            "parameters": [
                {
                    "name": "validationToken",
                    "in": "query",
                    "required": False,
                    "description": "Graph's validation handshake: echoed back as text/plain",
                    "schema": {"type": "string", "maxLength": 1024, "pattern": "^[^\\x00-\\x1f\\x7f]*$"},
                }
            ],
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["value"],
                            "properties": {
                                "value": {
                                    "type": "array",
                                    "maxItems": 1000,
                                    "description": "Graph's notification items; each is validated on its own, "
                                    "and an invalid one is dropped and counted without failing the others",
                                    "items": {},
                                }
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {"description": "handshake", "content": {"text/plain": {"schema": {"type": "string"}}}},
                "202": _json({"$ref": "#/components/schemas/Accepted"}, "every accepted item was persisted"),
                "400": _json(_ERROR, "not a notification body, or a bad validation token"),
                "413": _json(_ERROR, "the body is over WEBHOOK_MAX_BODY_BYTES (refused by Content-Length)"),
                "503": _json(_ERROR, "could not persist; Graph retries", _RETRY_AFTER),
            },
        }
    }


def openapi_document() -> dict[str, Any]:
    """The whole document (built on demand: it is small and served rarely)."""
    nullable_string = {"type": ["string", "null"]}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Microsoft Graph backend",
            "version": __version__,
            "description": "Users and mail from Microsoft Graph, cached and protected against throttling.",
        },
        "servers": [{"url": "/api"}],
        "paths": {
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Liveness and storage reachability",
                    "security": [],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Health"}, "healthy"),
                        "503": _json({"$ref": "#/components/schemas/Health"}, "a dependency does not answer"),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "the OpenAPI document")},
                }
            },
            "/notifications": _webhook("notifications", "Graph change notifications (validated by clientState)"),
            "/notifications/lifecycle": _webhook("lifecycleNotifications", "Graph lifecycle notifications"),
            "/users/{user_id}": {
                "get": {
                    "operationId": "getUser",
                    "summary": "One user, from cache when possible",
                    "security": _FUNCTION_KEY,
                    "parameters": [_USER_ID, _IF_NONE_MATCH],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/User"}, "the user", _CACHE_HEADERS),
                        **_ERRORS,
                    },
                }
            },
            "/users/{user_id}/messages": {
                "get": {
                    "operationId": "listMessages",
                    "summary": "A page of the user's messages, newest first",
                    "security": _FUNCTION_KEY,
                    "parameters": [
                        _USER_ID,
                        {
                            "name": "top",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_TOP, "default": DEFAULT_TOP},
                        },
                        {
                            "name": "cursor",
                            "in": "query",
                            "description": "next_cursor of the previous page (opaque)",
                            "schema": {"type": "string", "maxLength": MAX_CURSOR, "pattern": "^[A-Za-z0-9_-]+$"},
                        },
                        {
                            "name": "fields",
                            "in": "query",
                            "description": "comma-separated; allowed: " + ", ".join(MESSAGE_FIELDS),
                            "schema": {"type": "string", "default": ",".join(DEFAULT_MESSAGE_FIELDS)},
                        },
                        _IF_NONE_MATCH,
                    ],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/MessagePage"}, "one page", _CACHE_HEADERS),
                        **_ERRORS,
                    },
                }
            },
            "/users/{user_id}/messages/{message_id}": {
                "get": {
                    "operationId": "getMessage",
                    "summary": "One message; with rich notifications, cached from the notification's data",
                    "security": _FUNCTION_KEY,
                    "parameters": [
                        _USER_ID,
                        {
                            "name": "message_id",
                            "in": "path",
                            "required": True,
                            "description": "a Graph message id",
                            "schema": {"type": "string", "maxLength": MAX_MESSAGE_ID, "pattern": "^[A-Za-z0-9_=-]+$"},
                        },
                        _IF_NONE_MATCH,
                    ],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/Message"}, "the message", _CACHE_HEADERS),
                        **_ERRORS,
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        }
                    },
                },
                "Accepted": {
                    "type": "object",
                    "required": ["accepted", "dropped"],
                    "properties": {
                        "accepted": {"type": "integer"},
                        "lifecycle": {"type": "integer"},
                        "messages": {"type": "integer"},
                        "dropped": {"type": "object", "additionalProperties": {"type": "integer"}},
                    },
                },
                "Health": {
                    "type": "object",
                    "required": ["status", "version", "graph_mode", "checks"],
                    "properties": {
                        "status": {"type": "string", "enum": ["healthy", "unhealthy"]},
                        "version": {"type": "string"},
                        "graph_mode": {"type": "string", "enum": ["real", "simulator"]},
                        "checks": {"type": "object"},
                    },
                },
                "User": {
                    "type": "object",
                    "required": ["id", "displayName", "userPrincipalName"],
                    "properties": {
                        "id": {"type": "string"},
                        "displayName": nullable_string,
                        "givenName": nullable_string,
                        "surname": nullable_string,
                        "userPrincipalName": nullable_string,
                        "mail": nullable_string,
                        "jobTitle": nullable_string,
                        "department": nullable_string,
                        "officeLocation": nullable_string,
                        "mobilePhone": nullable_string,
                        "businessPhones": {"type": "array", "items": {"type": "string"}},
                        "preferredLanguage": nullable_string,
                    },
                },
                "Message": {
                    "type": "object",
                    "required": list(MESSAGE_RESOURCE_FIELDS),
                    "properties": {name: {} for name in MESSAGE_RESOURCE_FIELDS},
                },
                "MessagePage": {
                    "type": "object",
                    "required": ["items", "next_cursor"],
                    "properties": {
                        "items": {"type": "array", "items": {"type": "object", "required": ["id"]}},
                        "next_cursor": nullable_string,
                    },
                },
            },
        },
    }

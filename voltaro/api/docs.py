"""Interactive API docs (/docs) that work without internet.

FastAPI's default /docs page loads Swagger UI from a CDN, so it is blank on a site box
that cannot reach one. Swagger UI's distribution files are vendored under
``static/swagger-ui`` (Apache-2.0, see its README.md for the version and checksums) and
served from here; ReDoc, which would also come from a CDN, is not offered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_PATH = "/docs"
STATIC_PATH = "/docs/static"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
SWAGGER_UI_DIR = Path(__file__).parent / "static" / "swagger-ui"


def add_docs(app: FastAPI) -> None:
    """Serve Swagger UI at /docs with its assets from /docs/static (no token needed)."""
    app.mount(STATIC_PATH, StaticFiles(directory=SWAGGER_UI_DIR), name="swagger-ui")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        parameters: dict[str, Any] = {
            # Swagger UI would otherwise send the document to validator.swagger.io for
            # its badge: nothing leaves the box.
            "validatorUrl": None,
            "persistAuthorization": True,
        }
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{STATIC_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_PATH}/favicon-32x32.png",
            oauth2_redirect_url=OAUTH2_REDIRECT_PATH,
            swagger_ui_parameters=parameters,
        )

    @app.get(OAUTH2_REDIRECT_PATH, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()


# Each path's group in /docs (the first prefix that matches).
_TAGS = (
    ("/health/", "health"),
    ("/status", "server"),
    ("/charge_points/{charger_id}/commands/", "commands"),
    ("/charge_points/{charger_id}/charging_profiles", "smart charging"),
    ("/charge_points/{charger_id}/composite_schedule", "smart charging"),
    ("/charge_points/{charger_id}/health", "charger health"),
    ("/fleet/health", "charger health"),
    ("/charge_points", "charge points"),
    ("/sessions", "sessions"),
    ("/transactions.csv", "sessions"),
    ("/orphan_stops", "reconciliation"),
    ("/quarantine", "reconciliation"),
    ("/commands", "command audit"),
    ("/id_tags", "id tags"),
    ("/reservations", "reservations"),
    ("/local_list", "local list"),
    ("/security/", "security"),
    ("/circuits", "load management"),
    ("/site/", "load management"),
)
_TOTAL_IN_HEADER = ("/charge_points", "/id_tags")
_ERROR_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}


def complete_openapi(app: FastAPI) -> None:
    """What FastAPI's generated document leaves out, added once when it is first built:
    a group (tag) for every operation, the 400 of every route with a body (malformed
    JSON), and the X-Total-Count header of the lists that return a bare array."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                if not operation.get("tags"):
                    tag = next((t for prefix, t in _TAGS if path.startswith(prefix)), None)
                    if tag is not None:
                        operation["tags"] = [tag]
                responses = operation.setdefault("responses", {})
                if "requestBody" in operation:
                    responses.setdefault(
                        "400", {"description": "the body is not valid JSON", "content": _ERROR_BODY}
                    )
                if method == "get" and path in _TOTAL_IN_HEADER and "200" in responses:
                    responses["200"]["headers"] = {
                        "X-Total-Count": {
                            "description": "how many match the filters (before limit/offset)",
                            "schema": {"type": "integer"},
                        }
                    }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

"""/docs works on a site box without internet: Swagger UI's assets come from Voltaro.

The page may reference nothing outside the server (no CDN); every script, stylesheet and
icon it names is fetched from the running server and compared with the vendored file.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

import voltaro.api
from tests.api.conftest import running_api
from tests.e2e.conftest import RunningServer
from voltaro.settings import ApiScope, ApiToken

STATIC = Path(voltaro.api.__file__).parent / "static" / "swagger-ui"


@pytest.fixture
async def api(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[RunningServer, str]]:
    async with running_api(
        database_url,
        tmp_path,
        api_tokens=(ApiToken(token="read-token-0123456789", scope=ApiScope.READ),),
    ) as running:
        yield running


def _references(html: str) -> list[str]:
    """Every URL the page loads or links: src/href attributes and the script's url: '...'."""
    found = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    found += re.findall(r"""\burl:\s*["']([^"']+)["']""", html)
    found += re.findall(r"""oauth2RedirectUrl:\s*[^"']*["']([^"']+)["']""", html)
    return found


async def test_docs_page_and_its_assets_are_served_locally(api: tuple[RunningServer, str]) -> None:
    _, base = api
    async with httpx.AsyncClient(base_url=base, timeout=10) as anonymous:
        page = await anonymous.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        html = page.text
        assert "SwaggerUIBundle" in html
        references = _references(html)
        assert references, html
        # Nothing from another host: an offline box would show a blank page.
        for ref in references:
            assert not urlsplit(ref).netloc, f"/docs loads {ref} from another host"
        assert "cdn" not in html.lower()
        assets = {urlsplit(urljoin(f"{base}/docs", ref)).path for ref in references}
        assert "/openapi.json" in assets
        for path in sorted(assets):
            response = await anonymous.get(path)  # no token: the docs are public
            assert response.status_code == 200, path
            name = path.rsplit("/", 1)[-1]
            if (STATIC / name).exists():
                assert response.content == (STATIC / name).read_bytes(), path
        script = await anonymous.get(next(a for a in assets if a.endswith(".js")))
        assert "javascript" in script.headers["content-type"]
        assert len(script.content) > 500_000  # the real bundle, not a placeholder
        css = await anonymous.get(next(a for a in assets if a.endswith(".css")))
        assert css.headers["content-type"].startswith("text/css")
        # ReDoc would load from a CDN: it is not offered rather than offered blank.
        assert (await anonymous.get("/redoc")).status_code in (401, 404)
        # The static directory serves only its files.
        assert (await anonymous.get("/docs/static/../../voltaro.db")).status_code in (401, 404)
        assert (await anonymous.get("/docs/static/nope.js")).status_code == 404


async def test_licence_of_the_vendored_swagger_ui_ships_with_it() -> None:
    licence = (STATIC / "LICENSE").read_text()
    assert "Apache License" in licence
    assert "SmartBear" in (STATIC / "NOTICE").read_text()
    readme = (STATIC / "README.md").read_text()
    assert "swagger-ui-dist" in readme

"""The storefront demo page at ``/``: a static page that talks to the ``/v1`` API.

The page carries the first public key (``SHOPRANK_PUBLIC_KEYS``), which its event beacon sends;
a public key is no secret, it only marks the events as a browser's (see the README threat model).
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

router = APIRouter()
STATIC = Path(__file__).parent / "static"
KEY_META = '<meta name="shoprank-public-key" content="{}">'


@router.get("/", include_in_schema=False)
def storefront(request: Request) -> HTMLResponse:
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    keys = request.app.state.settings.public_keys
    if keys:
        page = page.replace("<head>", "<head>\n" + KEY_META.format(html.escape(keys[0], quote=True)), 1)
    return HTMLResponse(page)

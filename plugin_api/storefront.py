"""The storefront demo page at ``/``: a static page that talks to the ``/v1`` API."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

router = APIRouter()
STATIC = Path(__file__).parent / "static"


@router.get("/", include_in_schema=False)
def storefront() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")

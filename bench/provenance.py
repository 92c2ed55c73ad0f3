"""Kept for the scripts that still import it; everything lives in :mod:`bench.common` now."""

from __future__ import annotations

from bench.common import CHORUS, REPO, SHARED_DATA, git_commit

__all__ = ["CHORUS", "REPO", "SHARED_DATA", "git_commit"]

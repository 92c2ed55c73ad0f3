"""Under CI (``CI=true``) no tier may skip: a skipped test is reported as failed, with its reason,
except the checks that need hardware CI does not have (a CUDA device). A missing dependency
(Chromium, Java, an OpenSearch node, the shared data, a packaged model) must be installed by
``scripts/test``, not skipped. Registered by ``tests/conftest.py``."""

from __future__ import annotations

import os
from typing import Any

import pytest

HARDWARE_SKIPS = ("no CUDA device",)


def _reason(report: Any) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI", "").lower() != "true" or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = _reason(report)
    if any(h in reason for h in HARDWARE_SKIPS):
        return
    report.outcome = "failed"
    report.longrepr = f"skipped under CI, where every tier must run (install what it needs): {reason}"

"""axe-core in the browser tests: injected by the test (never served by the app), run, and read.

scripts/services.sh installs the npm package into a cache directory
(AXE_CORE_DIR); in CI a missing axe-core fails the tests that need it.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from playwright.sync_api import Page

from conftest import require_service

AXE_CORE_DIR = Path(os.environ.get("AXE_CORE_DIR", "/var/cache/chatplatform/axe-core"))
AXE_JS = AXE_CORE_DIR / "node_modules" / "axe-core" / "axe.min.js"
# WCAG 2.x A and AA, and axe's best practices.
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]


@cache
def _source() -> str:
    return AXE_JS.read_text()


def require_axe() -> None:
    require_service(f"axe-core ({AXE_JS}; run scripts/services.sh)", AXE_JS.is_file())


def violations(page: Page) -> list[str]:
    """axe's violations on the page as it is now, one line each (rule, impact, where)."""
    require_axe()
    # evaluate() runs through the DevTools protocol, so the page's CSP (no inline
    # or foreign script) stays as strict as it is for real visitors.
    page.evaluate(_source())
    found = page.evaluate(
        """async (tags) => {
            const result = await axe.run(document, { runOnly: { type: "tag", values: tags } });
            return result.violations.map((v) => ({
                id: v.id, impact: v.impact,
                nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ") + " :: " + n.failureSummary),
            }));
        }""",
        TAGS,
    )
    return [f"{v['id']} ({v['impact']}): {' | '.join(v['nodes'])}" for v in found]

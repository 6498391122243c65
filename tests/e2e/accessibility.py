"""axe-core (npm) in the page, run on one element: what it reports as violations.

axe-core comes from the node_modules folder the HTML-export test uses too
(``SONIOX_E2E_NODE_MODULES``; ``scripts/setup.sh --test`` installs both there).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.saved_notebook import NODE_MODULES_ENV

# Every rule axe runs by default (WCAG 2.x A/AA and best practices), on `el` only.
# JupyterLab's <body> is 0 px high (overflow hidden; the shell inside it is absolutely
# placed), and axe takes everything inside a 0-px overflow-hidden box for hidden: it then
# checks no text at all. For the run the body gets the viewport's height, then its own
# style back. `checked` counts the elements whose text contrast axe measured, so a run
# that saw nothing cannot pass as clean. Colours in the middle of a transition (just after
# a theme change) cannot be measured: axe files them as "incomplete", so the run first
# waits for the page's finite animations to end (at most 3 s).
AXE_RUN_JS = """async (el) => {
  const finite = document.getAnimations().filter(
    (a) => a.effect && a.effect.getComputedTiming().endTime !== Infinity);
  await Promise.race([Promise.all(finite.map((a) => a.finished.catch(() => null))),
                      new Promise((done) => setTimeout(done, 3000))]);
  const body = document.body, style = body.style.minHeight;
  if (body.getBoundingClientRect().height < 2) body.style.minHeight = "100vh";
  try {
    const result = await axe.run(el, { resultTypes: ["violations", "passes"] });
    const contrast = result.passes.find((p) => p.id === "color-contrast");
    return { checked: contrast ? contrast.nodes.length : 0,
      violations: result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.map((n) => n.target.join(" ")) })) };
  } finally {
    body.style.minHeight = style;
  }
}"""


def node_modules() -> Path:
    """The node_modules folder of the browser tests (skip the test if it is not there)."""
    return Path(os.environ.get(NODE_MODULES_ENV, "/nonexistent"))


def axe_violations(page, element, min_checked: int = 3) -> list[dict]:
    """Inject axe-core into ``page`` (once), run it on ``element`` (a handle) and return
    its violations; fails if axe measured the contrast of fewer than ``min_checked``
    elements (it did not see the widget)."""
    axe_js = node_modules() / "axe-core" / "axe.min.js"
    if not axe_js.is_file():
        if NODE_MODULES_ENV in os.environ:  # scripts/test.sh sets it: a broken setup fails
            pytest.fail(f"no axe-core in {NODE_MODULES_ENV}={os.environ[NODE_MODULES_ENV]}; "
                        "run scripts/setup.sh --test")
        pytest.skip(f"set {NODE_MODULES_ENV} to a node_modules with axe-core")
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=str(axe_js))
    for _ in range(3):  # a theme that is still being applied: look again (bounded)
        result = page.evaluate(AXE_RUN_JS, element)
        if result["checked"] >= min_checked:
            break
        page.wait_for_timeout(500)
    assert result["checked"] >= min_checked, f"axe saw too little of the widget: {result}"
    return result["violations"]

"""What the browser tests share: Debian's chromium, its flags, the skip rule, and the page's
image-to-screen transform."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
# CI installs chromium (.ci/run), so there a missing browser is a failure, not a skip.
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"),
                                    reason="Debian's chromium is not installed (.ci/run installs it)")


def screen_point(page, x: float, y: float) -> tuple[float, float]:
    """Image pixel -> page coordinates, through the SVG's transform."""
    return tuple(page.evaluate("""([x, y]) => {
        const svg = document.getElementById('canvas');
        const p = svg.createSVGPoint(); p.x = x; p.y = y;
        const s = p.matrixTransform(svg.getScreenCTM());
        return [s.x, s.y];
    }""", [x, y]))

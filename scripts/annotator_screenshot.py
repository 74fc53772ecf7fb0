"""Make docs/annotator.png: runs the end-to-end browser test (real headless Chromium on a
FiftyOne dataset of synthetic people) and keeps the page's screenshot.

    .venv/bin/python scripts/annotator_screenshot.py [--out docs/annotator.png]
Needs Debian's chromium (apt-get install chromium) and the test extra (playwright).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "annotator.png"))
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CLICKPOSE_ANNOTATOR_SCREENSHOT": str(out)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_annotator_browser.py"], cwd=ROOT, env=env,
                          check=False)
    if done.returncode == 0 and out.is_file():
        print(f"wrote {out}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())

"""Checkpoints that ship with the package, named instead of given by path.

Each one is an ordinary checkpoint folder under `clickpose/weights/<name>/` (weights stored
in half precision to keep the package small, read back in float32), written by
`scripts/package_pretrained.py` from a run whose command and measured figures its
config.json records under 'metrics' and 'training'. Wherever a checkpoint path is expected
(`--init`, `--checkpoint`, a campaign's `initial_checkpoint`), a name that is not an
existing path names one of these.
"""
from __future__ import annotations

from pathlib import Path

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "weights"
# Where the demo and a new campaign start: the `tiny` preset after 100 minutes on synthetic
# people, which fine-tunes further on real photos than the 30-minute `tiny-synthetic` does
# (docs/measurements.md, "Which start model").
START_MODEL = "tiny-synthetic-100min"


def pretrained_names() -> list[str]:
    """The packaged checkpoints, by name."""
    if not PRETRAINED_DIR.is_dir():
        return []
    # A hidden folder is a package being written (scripts/package_pretrained.py).
    return sorted(p.name for p in PRETRAINED_DIR.iterdir()
                  if not p.name.startswith(".") and (p / "config.json").is_file())


def pretrained_folder(name: str) -> Path:
    """The folder of the packaged checkpoint `name` (KeyError naming the ones there are)."""
    if name not in pretrained_names():
        raise KeyError(f"no packaged checkpoint '{name}'; packaged: "
                       f"{', '.join(pretrained_names()) or 'none'}")
    return PRETRAINED_DIR / name


def resolve_checkpoint_path(path: str | Path) -> Path:
    """`path` itself when it exists (a local folder always wins), else the packaged
    checkpoint of that name, else `path` unchanged (the caller reports it missing)."""
    path = Path(path)
    if path.exists() or len(path.parts) != 1 or str(path) not in pretrained_names():
        return path
    return PRETRAINED_DIR / str(path)

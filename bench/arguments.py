"""Command-line values the bench scripts share beyond argparse's own types."""
from __future__ import annotations

import argparse


def parse_counts(parser: argparse.ArgumentParser, option: str, text: str, what: str,
                 example: str) -> list[int]:
    """'1,2,3' -> [1, 2, 3]: comma-separated integers of at least 1, else a parser error that
    names `option` and the value given."""
    try:
        counts = [int(c) for c in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        parser.error(f"{option} {text}: comma-separated {what} of at least 1, e.g. {example}")
    return counts

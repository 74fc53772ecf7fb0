"""Defaults that the training code and its CLI commands share, importable without torch (the
CLI loads the heavy modules only when a command runs)."""
from __future__ import annotations

# Training images whose predictions fit a checkpoint's click prior (its error model): on the
# synthetic bench's tuning images 300, 1,000 and 2,000 gave refine NoC@90 6.55, 6.27 and
# 6.21 (docs/measurements.md); tiny fits 1,000 in about 40 s on a 2-core CPU.
CLICK_PRIOR_IMAGES = 1000
# A fine-tuned checkpoint's fit is pooled with the click prior it inherited, which counts as
# at most this many persons: a few dozen labels then adjust the inherited prior instead of
# replacing it with noisy pair statistics, and a few thousand outweigh it
# (docs/measurements.md, "A click prior for a model fine-tuned on few labels").
CLICK_PRIOR_INHERITED_PERSONS = 300
# A fit with nothing to inherit (a fresh run, a model adapted to new keypoints) is pooled
# with a prior that says nothing, counted as this many persons: a few dozen labelled persons
# then narrow it only so far (same section of docs/measurements.md).
CLICK_PRIOR_UNINFORMED_PERSONS = 100

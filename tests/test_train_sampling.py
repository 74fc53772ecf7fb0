"""clickpose.train.sampling: a round's new labels as a fixed share of each epoch's draws."""
from __future__ import annotations

import pytest
import torch

from clickpose.train.sampling import recent_sampler

NAMES = [f"pool/{i:03d}.jpg" for i in range(100)]


def _draws(sampler, epochs: int) -> list[str]:
    return [NAMES[i] for _ in range(epochs) for i in sampler]


def test_recent_images_make_up_their_share_of_the_draws():
    recent = NAMES[:10]   # uniform draws would give them 10 %
    sampler = recent_sampler(NAMES, recent, 0.5, torch.Generator().manual_seed(0))
    draws = _draws(sampler, 40)
    assert len(draws) == 40 * len(NAMES)   # an epoch keeps its length
    share = sum(name in recent for name in draws) / len(draws)
    assert share == pytest.approx(0.5, abs=0.02)
    # The older labels are replayed, each about as often as another.
    old_counts = [draws.count(name) for name in NAMES[10:]]
    assert min(old_counts) > 0 and max(old_counts) < 3 * min(old_counts)


def test_same_generator_seed_same_draws():
    first = recent_sampler(NAMES, NAMES[:5], 0.3, torch.Generator().manual_seed(7))
    again = recent_sampler(NAMES, NAMES[:5], 0.3, torch.Generator().manual_seed(7))
    assert list(first) == list(again)


def test_nothing_to_emphasise_leaves_uniform_shuffling():
    assert recent_sampler(NAMES, [], 0.5, torch.Generator()) is None
    assert recent_sampler(NAMES, NAMES, 0.5, torch.Generator()) is None


@pytest.mark.parametrize("share", [0.0, 1.0, -0.2, 1.5])
def test_a_share_outside_zero_one_is_refused(share):
    with pytest.raises(ValueError, match="between 0 and 1"):
        recent_sampler(NAMES, NAMES[:3], share, torch.Generator())


def test_names_not_in_the_data_are_named():
    with pytest.raises(ValueError, match="'pool/999.jpg'.*annotations.json"):
        recent_sampler(NAMES, ["pool/999.jpg", NAMES[0]], 0.5, torch.Generator())

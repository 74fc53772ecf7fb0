"""select_batch: budgets in images and clicks, seeds and ties, labeled images, edge pools."""
from __future__ import annotations

import numpy as np
import pytest

from selection import STRATEGIES, ImageScore, PersonScore, Selection, select_batch


def pool(scores, costs=None, method="least_confidence"):
    costs = costs if costs is not None else [None] * len(scores)
    return [ImageScore(image_id=i, method=method, score=s, cost=c,
                       persons=[PersonScore(index=0, score=0.1), PersonScore(index=1, score=0.7)])
            for i, (s, c) in enumerate(zip(scores, costs))]


def embeddings_for(n, seed=0):
    rng = np.random.default_rng(seed)
    return {i: rng.normal(size=4) for i in range(n)}


def test_top_takes_highest_scores_in_order_with_reasons_and_worst_person_first():
    result = select_batch(pool([0.1, 0.9, 0.5, 0.7]), budget_images=2)
    assert result.image_ids == [1, 3]
    assert result.items[0].reason == "top score 0.9 (least_confidence)"
    assert [p.index for p in result.items[0].persons] == [1, 0]
    assert result.total_score == pytest.approx(1.6)
    assert "chose 2 of 4" in result.message and not result.took_whole_pool


def test_labeled_images_are_excluded():
    result = select_batch(pool([0.1, 0.9, 0.5, 0.7]), budget_images=2, labeled={1, 3})
    assert result.image_ids == [2, 0]
    assert result.labeled_excluded == 2 and result.pool_size == 2


@pytest.mark.parametrize("strategy", ["top", "top_per_click", "random", "k_center",
                                      "weighted_k_center", "k_center_per_click", "cluster_top",
                                      "typical_clusters"])
def test_clicks_budget_is_never_exceeded(strategy):
    rng = np.random.default_rng(3)
    scores = rng.uniform(size=60)
    costs = rng.uniform(0.5, 12, size=60)
    result = select_batch(pool(scores, costs), budget_clicks=25.0, strategy=strategy,
                          embeddings=embeddings_for(60), seed=1)
    assert 0 < result.total_cost <= 25.0
    assert result.total_cost == pytest.approx(sum(costs[i] for i in result.image_ids))
    # the walk stops only when nothing else fits
    left = 25.0 - result.total_cost
    rest = [costs[i] for i in range(60) if i not in result.image_ids]
    assert min(rest) > left


def test_clicks_budget_skips_an_image_that_does_not_fit_for_a_cheaper_one():
    result = select_batch(pool([0.9, 0.8, 0.7], costs=[3.0, 8.0, 2.0]), budget_clicks=6)
    assert result.image_ids == [0, 2]
    assert result.total_cost == 5.0


def test_cost_aware_prefers_score_per_click_and_costs_argument_overrides():
    scores = pool([0.9, 0.6, 0.5], costs=[10.0, 2.0, 1.0])
    assert select_batch(scores, budget_images=2, strategy="top").image_ids == [0, 1]
    per_click = select_batch(scores, budget_images=2, strategy="top_per_click")
    assert per_click.image_ids == [2, 1]
    assert "score per click 0.5" in per_click.items[0].reason
    overridden = select_batch(scores, budget_images=1, strategy="top_per_click",
                              costs={0: 1.0, 1: 2.0, 2: 1.0})
    assert overridden.image_ids == [0]


def test_both_budgets_hold_together():
    result = select_batch(pool([0.9, 0.8, 0.7, 0.6], costs=[1, 1, 1, 1]), budget_images=3,
                          budget_clicks=2)
    assert result.image_ids == [0, 1]


def test_same_seed_same_choice_and_other_seeds_break_ties_differently():
    ties = pool([0.5] * 20)
    first = select_batch(ties, budget_images=5, seed=0)
    assert select_batch(ties, budget_images=5, seed=0).image_ids == first.image_ids
    others = {tuple(select_batch(ties, budget_images=5, seed=s).image_ids) for s in range(1, 6)}
    assert len(others | {tuple(first.image_ids)}) > 1
    # the pool's order does not matter, only the seed
    assert select_batch(list(reversed(ties)), budget_images=5, seed=0).image_ids == first.image_ids
    # ties never override the score
    mixed = pool([0.5] * 10 + [0.9])
    assert select_batch(mixed, budget_images=1, seed=3).image_ids == [10]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_is_deterministic_with_a_seed(strategy):
    rng = np.random.default_rng(0)
    scores = pool(rng.uniform(size=40), rng.uniform(1, 5, size=40))
    emb = embeddings_for(40)
    a = select_batch(scores, budget_images=8, strategy=strategy, seed=4, embeddings=emb)
    b = select_batch(scores, budget_images=8, strategy=strategy, seed=4, embeddings=emb)
    assert a.image_ids == b.image_ids and len(a.image_ids) == 8
    assert len(set(a.image_ids)) == 8


def test_k_center_uses_labeled_images_as_centers():
    emb = {0: np.array([0.0, 0.0]), 1: np.array([0.1, 0.0]), 2: np.array([5.0, 5.0]),
           3: np.array([5.1, 5.0]), 4: np.array([-5.0, 5.0])}
    result = select_batch(pool([0.0] * 5), budget_images=1, strategy="k_center",
                          labeled={2, 4}, embeddings=emb)
    # nearest labeled center: image 0 at 7.07 (both), image 1 at 7.00 (from 2), image 3 at 0.1
    assert result.image_ids == [0]
    assert "distance" in result.items[0].reason


def test_empty_pool_gives_an_empty_selection_that_says_why():
    nothing = select_batch([], budget_images=10)
    assert nothing.is_empty and "the pool is empty" in nothing.message
    all_labeled = select_batch(pool([0.3, 0.4]), budget_images=10, labeled={0, 1})
    assert all_labeled.is_empty
    assert "2 scored images, 2 already labeled" in all_labeled.message


def test_pool_smaller_than_budget_takes_all_and_says_so():
    result = select_batch(pool([0.3, 0.8, 0.1]), budget_images=10)
    assert result.image_ids == [1, 0, 2]
    assert result.took_whole_pool
    assert ("pool of 3 unlabeled images is within the budget (10 images): took all 3"
            in result.message)
    clicks = select_batch(pool([0.3, 0.8], costs=[2, 3]), budget_clicks=100)
    assert clicks.took_whole_pool and clicks.total_cost == 5


def test_nothing_fits_the_clicks_budget():
    result = select_batch(pool([0.3, 0.8], costs=[5, 6]), budget_clicks=2)
    assert result.is_empty and "the cheapest needs 5 clicks" in result.message


def test_clear_errors_for_bad_inputs():
    with pytest.raises(ValueError, match="give budget_images, budget_clicks, or both"):
        select_batch(pool([0.1]))
    with pytest.raises(ValueError, match="no predicted clicks for image 0"):
        select_batch(pool([0.1]), budget_clicks=3)
    with pytest.raises(ValueError, match="strategy 'best' is unknown"):
        select_batch(pool([0.1]), budget_images=1, strategy="best")
    with pytest.raises(ValueError, match="needs embeddings"):
        select_batch(pool([0.1]), budget_images=1, strategy="k_center")
    with pytest.raises(ValueError, match="no embedding for pool image 1"):
        select_batch(pool([0.1, 0.2]), budget_images=1, strategy="k_center",
                     embeddings={0: np.zeros(2)})
    with pytest.raises(ValueError, match="image 0 is scored twice"):
        select_batch(pool([0.1]) * 2, budget_images=1)
    with pytest.raises(ValueError, match="budget_images is -1"):
        select_batch(pool([0.1]), budget_images=-1)


def test_mapping_of_scores_and_json_round_trip(tmp_path):
    result = select_batch({"a.jpg": 0.2, "b.jpg": 0.7}, budget_images=1)
    assert result.image_ids == ["b.jpg"]
    result.save(tmp_path / "selection.json")
    again = Selection.load(tmp_path / "selection.json")
    assert '"image_ids": [\n    "b.jpg"\n  ]' in (tmp_path / "selection.json").read_text()
    assert again == result and again.image_ids == ["b.jpg"]

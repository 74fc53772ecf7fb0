"""Diversity on embeddings: k-center, k-means, and the two hybrids, on hand-made points."""
from __future__ import annotations

import numpy as np
import pytest

from selection import (
    k_center_greedy,
    kmeans_clusters,
    top_uncertainty_per_cluster,
    uncertainty_weighted_k_center,
)
from selection.diversity import uncertainty_weights

# A tight blob around the origin and four far corners (indices 10..13).
BLOB = np.random.default_rng(0).normal(0, 0.1, size=(10, 2))
CORNERS = np.array([[10.0, 10.0], [-10.0, 10.0], [10.0, -10.0], [-9.0, -9.0]])
POINTS = np.concatenate([BLOB, CORNERS])


def blobs(n_per: int = 30, seed: int = 0):
    centers = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    rng = np.random.default_rng(seed)
    x = np.concatenate([c + rng.normal(0, 0.5, size=(n_per, 2)) for c in centers])
    return x, np.repeat(np.arange(3), n_per)


def test_k_center_starts_typical_then_picks_the_far_points():
    chosen = k_center_greedy(POINTS, k=5)
    assert chosen[0] < 10                                   # the image nearest the mean
    assert set(chosen[1:]) == {10, 11, 12, 13}
    # the farthest corner from the first center comes first; (-9, -9) is the nearest corner
    assert chosen[-1] == 13


def test_k_center_with_labeled_points_covers_what_they_leave_out():
    # the blob and two corners are labeled: the two other corners are the far points
    chosen = k_center_greedy(POINTS, k=2, already_selected=[0, 10, 11])
    assert set(chosen) == {12, 13}
    assert not set(chosen) & {0, 10, 11}


def test_k_center_stops_at_the_pool_size_and_ties_follow_the_rank():
    square = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert sorted(k_center_greedy(square, k=10)) == [0, 1, 2, 3]
    # all four are equally near the mean: the rank decides the start
    assert k_center_greedy(square, 1, tie_rank=np.array([3, 2, 0, 1])) == [2]
    assert k_center_greedy(square, 1, tie_rank=np.array([0, 1, 2, 3])) == [0]


def test_k_center_refuses_non_finite_embeddings():
    bad = POINTS.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="row 3 is not finite"):
        k_center_greedy(bad, 2)


def test_kmeans_separates_blobs_and_is_seeded():
    x, truth = blobs()
    a = kmeans_clusters(x, 3, seed=0)
    b = kmeans_clusters(x, 3, seed=0)
    np.testing.assert_array_equal(a.labels, b.labels)
    # each true blob is exactly one cluster (up to naming)
    for blob in range(3):
        assert len(set(a.labels[truth == blob])) == 1
    assert len(set(a.labels)) == 3
    assert a.centers.shape == (3, 2)


def test_kmeans_caps_clusters_at_distinct_points():
    x = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    assert len(set(kmeans_clusters(x, 5).labels)) == 2


def test_top_uncertainty_per_cluster_takes_each_clusters_best():
    x, truth = blobs()
    scores = np.linspace(0, 1, len(x))[::-1].copy()         # blob 0 holds all the top scores
    chosen = top_uncertainty_per_cluster(x, scores, k=3, n_clusters=3, seed=0)
    assert sorted(truth[chosen]) == [0, 1, 2]                # one per blob, not three from blob 0
    for i in chosen:
        assert scores[i] == scores[truth == truth[i]].max()
    # the cluster with the best image leads, then round robin
    six = top_uncertainty_per_cluster(x, scores, k=6, n_clusters=3, seed=0)
    assert six[0] == 0 and list(truth[six]) == [0, 1, 2, 0, 1, 2]


def test_uncertainty_weighted_k_center_trades_distance_for_uncertainty():
    scores = np.zeros(len(POINTS))
    scores[10] = 1.0            # one far corner is uncertain
    scores[:10] = 0.9           # the blob is uncertain too
    chosen = uncertainty_weighted_k_center(POINTS, scores, k=3)
    assert chosen[0] == 10                                  # highest weight starts
    assert chosen[1] < 10                                   # near-0.9 blob: 0.9 x 14 > 0.05 x 20
    plain = k_center_greedy(POINTS, k=3, already_selected=[10])
    assert set(plain) <= {11, 12, 13}                       # unweighted goes for the corners
    np.testing.assert_allclose(uncertainty_weights(np.array([2.0, 4.0, 3.0])), [0.05, 1.0, 0.525])
    np.testing.assert_allclose(uncertainty_weights(np.array([0.3, 0.3])), [1.0, 1.0])


def test_many_labeled_centers_give_the_exact_nearest_distances():
    from scipy.spatial.distance import cdist

    from selection.diversity import KCenter

    rng = np.random.default_rng(5)
    x, centers = rng.normal(size=(300, 8)), rng.normal(size=(70, 8))
    state = KCenter(x, centers=centers)
    np.testing.assert_allclose(state.min_dist, cdist(x, centers).min(axis=1), atol=1e-9)
    # block size does not change the answer
    from selection.diversity.k_center import _min_distances
    np.testing.assert_allclose(_min_distances(x, centers, max_block=300 * 3), state.min_dist)
    # one more center by index updates the same way as brute force
    state.add(0)
    np.testing.assert_allclose(
        state.min_dist, cdist(x, np.vstack([centers, x[:1]])).min(axis=1), atol=1e-9)


def test_k_center_per_click_covers_the_far_points_that_cost_least():
    from selection import ImageScore, select_batch

    points = np.concatenate([BLOB, [[20.0, 20.0]], CORNERS[1:]])
    costs = np.full(len(points), 5.0)
    costs[10] = 40.0            # the farthest corner from the labeled blob is crowded: 40 clicks
    scores = [ImageScore(image_id=i, method="expected_clicks", score=0.0, cost=float(costs[i]))
              for i in range(len(points))]
    embeddings = dict(enumerate(points))
    labeled = set(range(10))
    plain = select_batch(scores, budget_images=1, strategy="k_center", labeled=labeled,
                         embeddings=embeddings)
    assert plain.image_ids == [10]
    per_click = select_batch(scores, budget_images=3, strategy="k_center_per_click",
                             labeled=labeled, embeddings=embeddings)
    # the three other corners first: half as far, at an eighth of the cost
    assert set(per_click.image_ids) == {11, 12, 13}
    assert "1 / predicted clicks 0.2" in per_click.items[0].reason
    # a blob image costs as little, but lies next to the labeled ones: never worth it here
    assert not set(per_click.image_ids) & labeled
    with pytest.raises(ValueError, match="'k_center_per_click' needs a cost for every image"):
        select_batch([ImageScore(image_id=0, method="m", score=0.0)], budget_images=1,
                     strategy="k_center_per_click", embeddings={0: POINTS[0]})

"""Typical images of uncovered clusters (TypiClust) on hand-made points whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest

from selection import ImageScore, select_batch
from selection.diversity.typical import TypicalClusters, typical_clusters, typicality

CENTERS = np.array([[0.0, 0.0], [30.0, 0.0], [0.0, 30.0]])


def three_blobs(sizes=(40, 25, 10), seed: int = 0):
    """Three blobs of the given sizes; in each, point 0 sits on the blob's centre."""
    rng = np.random.default_rng(seed)
    parts = []
    for center, n in zip(CENTERS, sizes):
        blob = center + rng.normal(0, 1.0, size=(n, 2))
        blob[0] = center
        parts.append(blob)
    x = np.concatenate(parts)
    return x, np.repeat(np.arange(3), sizes)


def test_typicality_is_the_inverse_mean_distance_to_the_nearest_neighbours():
    line = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [10.0, 0.0]])
    # two neighbours each: 0 -> (1, 2), 1 -> (0, 2), 2 -> (1, 3), 3 -> (2, 1), 10 -> (3, 2)
    np.testing.assert_allclose(typicality(line, neighbors=2),
                               [1 / 1.5, 1.0, 1.0, 1 / 1.5, 1 / 7.5])
    assert typicality(np.array([[1.0, 2.0]])).tolist() == [0.0]     # alone: nothing typical
    # more neighbours asked than there are: all the others
    np.testing.assert_allclose(typicality(line[:3], neighbors=20), [1 / 1.5, 1.0, 1 / 1.5])


def test_each_uncovered_cluster_gives_its_most_typical_image_largest_first():
    x, truth = three_blobs()
    chosen = typical_clusters(x, 3, n_clusters=3, seed=0)
    assert list(truth[chosen]) == [0, 1, 2]            # one per blob, the largest blob first
    for i in chosen:                                   # near the blob's centre, not its rim
        assert np.linalg.norm(x[i] - CENTERS[truth[i]]) < 1.0


def test_labeled_images_cover_their_cluster_and_are_never_chosen():
    x, truth = three_blobs()
    labeled = x[truth == 0][:5] + 0.01                 # the big blob is labeled already
    chosen = typical_clusters(x, 2, labeled_embeddings=labeled, n_clusters=3, seed=0)
    assert sorted(truth[chosen]) == [1, 2]             # the uncovered blobs, not the big one
    # a third pick: every cluster is covered; the one with the fewest labels comes next
    third = typical_clusters(x, 3, labeled_embeddings=labeled, n_clusters=3, seed=0)
    assert list(truth[third]) == [1, 2, 1]


def test_thin_clusters_of_outliers_come_after_the_dense_ones():
    x, truth = three_blobs(sizes=(40, 25, 10))
    outliers = np.array([[200.0, 200.0], [-200.0, 150.0]])
    points = np.concatenate([x, outliers])
    chosen = typical_clusters(points, 3, n_clusters=5, seed=0)
    assert not {len(x), len(x) + 1} & set(chosen)      # k-center would take these first
    assert sorted(truth[chosen]) == [0, 1, 2]
    everything = typical_clusters(points, len(points), n_clusters=5, seed=0)
    assert sorted(everything) == list(range(len(points)))     # stops at the pool's size
    assert set(everything[-2:]) == {len(x), len(x) + 1}


def test_the_same_seed_gives_the_same_choice_and_ties_follow_the_rank():
    x, _ = three_blobs()
    assert typical_clusters(x, 6, n_clusters=8, seed=3) == typical_clusters(x, 6, n_clusters=8,
                                                                           seed=3)
    square = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # all equally typical
    assert typical_clusters(square, 1, n_clusters=1, tie_rank=np.array([3, 2, 0, 1])) == [2]
    assert typical_clusters(square, 1, n_clusters=1, tie_rank=np.array([0, 1, 2, 3])) == [0]


def test_select_batch_clusters_labels_and_batch_together_and_respects_clicks():
    x, truth = three_blobs()
    scores = [ImageScore(image_id=i, method="random", score=0.0, cost=4.0) for i in range(len(x))]
    embeddings = dict(enumerate(x))
    labeled = {int(i) for i in np.flatnonzero(truth == 0)[:5]}
    chosen = select_batch(scores, budget_images=2, strategy="typical_clusters", labeled=labeled,
                          embeddings=embeddings)
    assert not set(chosen.image_ids) & labeled
    # as many clusters as labels and batch (7): both picks open a cluster no label covers
    assert all("0 labeled or chosen before it" in item.reason for item in chosen.items)
    by_clicks = select_batch(scores, budget_clicks=10, strategy="typical_clusters",
                             labeled=labeled, embeddings=embeddings)
    assert len(by_clicks.image_ids) == 2 and by_clicks.total_cost == 8.0
    with pytest.raises(ValueError, match="'typical_clusters' needs embeddings"):
        select_batch(scores, budget_images=1, strategy="typical_clusters")


def test_non_finite_embeddings_are_refused_with_the_row():
    x, _ = three_blobs()
    x[7, 0] = np.inf
    with pytest.raises(ValueError, match="row 7 is not finite"):
        TypicalClusters(x, n_clusters=3)
    assert typical_clusters(np.empty((0, 2)), 3) == []

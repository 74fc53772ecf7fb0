"""Choose the batch to label under a budget in images, in predicted clicks, or both.

The strategy (selection.strategies) proposes images one at a time among those still available;
an image is available while it is unlabeled, not yet chosen and its cost fits the clicks left.
So the clicks budget is never exceeded: the walk skips an image that does not fit (a cheaper
one further down may) and stops when the image budget is reached or nothing fits any more.
With strategy 'top' this is greedy by score under the budget; with 'top_per_click' greedy by
score per click; with 'k_center_per_click' greedy by embedding distance per click.

Special cases:
- already-labeled images are left out (and, for k-center, are its first centers);
- an empty pool (nothing scored, or everything labeled) gives an empty Selection whose message
  says so: no error, so a scheduled round can end cleanly;
- a pool within the budget is taken whole, with took_whole_pool=True and a message.
"""
from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

import numpy as np

from selection.click_calibration import ClickCalibration
from selection.results import ImageId, ImageScore, SelectedImage, Selection
from selection.strategies import NEEDS_COSTS, NEEDS_EMBEDDINGS, STRATEGIES, make_picker
from selection.ties import tie_ranks


def _as_image_scores(scores) -> list[ImageScore]:
    if isinstance(scores, Mapping):
        return [ImageScore(image_id=k, method="given", score=float(v)) for k, v in scores.items()]
    out = list(scores)
    seen: set = set()
    for s in out:
        if s.image_id in seen:
            raise ValueError(
                f"select_batch: image {s.image_id!r} is scored twice; merge the shards' scores "
                "with selection.pool.merge_pool_scores, which refuses duplicates"
            )
        seen.add(s.image_id)
    return out


def _check_budgets(budget_images, budget_clicks) -> None:
    if budget_images is None and budget_clicks is None:
        raise ValueError("select_batch: give budget_images, budget_clicks, or both")
    if budget_images is not None and (int(budget_images) != budget_images or budget_images < 0):
        raise ValueError(f"select_batch: budget_images is {budget_images}; use an integer >= 0")
    if budget_clicks is not None and not (math.isfinite(budget_clicks) and budget_clicks >= 0):
        raise ValueError(f"select_batch: budget_clicks is {budget_clicks}; use a number >= 0")


def _costs(pool: list[ImageScore], costs: Mapping | None, required: bool) -> np.ndarray | None:
    values = []
    for s in pool:
        c = costs.get(s.image_id, s.cost) if costs is not None else s.cost
        if c is None:
            if required:
                raise ValueError(
                    f"select_batch: no predicted clicks for image {s.image_id!r}; a clicks "
                    "budget, 'top_per_click' or 'k_center_per_click' needs a cost for every "
                    "image: pass costs={image_id: clicks} or score the pool with "
                    "selection.scores.expected_clicks"
                )
            return None
        if not (math.isfinite(c) and c >= 0):
            raise ValueError(f"select_batch: cost of image {s.image_id!r} is {c}; use clicks >= 0")
        values.append(float(c))
    return np.asarray(values, dtype=np.float64)


def _embeddings(ids: Sequence, embeddings: Mapping, what: str) -> np.ndarray:
    missing = [i for i in ids if i not in embeddings]
    if missing:
        raise ValueError(
            f"select_batch: no embedding for {what} image {missing[0]!r} ({len(missing)} missing); "
            "diversity strategies need a pooled backbone embedding for every pool image"
        )
    return np.stack([np.asarray(embeddings[i], dtype=np.float64) for i in ids])


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _budget_text(budget_images, budget_clicks) -> str:
    parts = []
    if budget_images is not None:
        parts.append(_count(budget_images, "image"))
    if budget_clicks is not None:
        parts.append(f"{budget_clicks:g} clicks")
    return " and ".join(parts)


def _batch_images(budget_images: int | None, budget_clicks: float | None,
                  cost: np.ndarray | None, min_cost: float) -> int:
    """The images a batch will hold: the image budget, or the clicks budget over the median
    cost."""
    if budget_images is not None:
        return max(1, budget_images)
    return max(1, round(budget_clicks / max(float(np.median(cost)), min_cost)))


def select_batch(
    scores: Sequence[ImageScore] | Mapping[ImageId, float],
    budget_images: int | None = None,
    budget_clicks: float | None = None,
    costs: Mapping[ImageId, float] | None = None,
    strategy: str = "top",
    seed: int = 0,
    labeled: Collection[ImageId] = frozenset(),
    embeddings: Mapping[ImageId, np.ndarray] | None = None,
    n_clusters: int | None = None,
    min_cost: float = 1.0,
    calibration: ClickCalibration | None = None,
) -> Selection:
    """The images to label next, in the order chosen, with a reason and per-person details each.

    costs: predicted clicks per image (else ImageScore.cost); needed for budget_clicks,
    'top_per_click' and 'k_center_per_click' (which divide by max(cost, min_cost): every image
    costs at least a look).
    embeddings: pooled backbone embedding per image id, for the diversity strategies; labeled
    images found there seed k-center. n_clusters (cluster_top): default the image budget, or
    the clicks budget over the median cost; (typical_clusters) that plus the labeled images
    found in `embeddings`.
    calibration: a ClickCalibration fitted on the campaign's labeled images; the costs
    become calibrated clicks for the budget and the strategy (from each image's
    cost_features where it has learned their weights; an unfitted one leaves them as they
    are and says why); each chosen image keeps its uncalibrated_cost and cost_features.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy '{strategy}' is unknown; use one of {', '.join(STRATEGIES)}")
    _check_budgets(budget_images, budget_clicks)
    budget_images = None if budget_images is None else int(budget_images)
    budget_clicks = None if budget_clicks is None else float(budget_clicks)
    all_scores = _as_image_scores(scores)
    labeled = set(labeled)
    pool = [s for s in all_scores if s.image_id not in labeled]
    result = Selection(strategy=strategy, seed=seed, budget_images=budget_images,
                       budget_clicks=budget_clicks, pool_size=len(pool),
                       labeled_excluded=len(all_scores) - len(pool),
                       calibration=None if calibration is None else calibration.model_dump())
    if not pool:
        result.message = (f"the pool is empty: {_count(len(all_scores), 'scored image')}, "
                          f"{result.labeled_excluded} already labeled; nothing to choose")
        return result

    ids = [s.image_id for s in pool]
    score = np.array([s.score for s in pool], dtype=np.float64)
    raw_cost = _costs(pool, costs, required=budget_clicks is not None or strategy in NEEDS_COSTS)
    cost = raw_cost
    if calibration is not None and calibration.fitted and raw_cost is not None:
        cost = calibration.clicks(raw_cost, [s.cost_features for s in pool])
    rank = tie_ranks(ids, seed)
    x = centers = None
    if strategy in NEEDS_EMBEDDINGS:
        if embeddings is None:
            raise ValueError(f"select_batch: strategy '{strategy}' needs embeddings "
                             "{image_id: pooled backbone vector}")
        x = _embeddings(ids, embeddings, "pool")
        known = [i for i in labeled if i in embeddings]
        centers = _embeddings(known, embeddings, "labeled") if known else None
    if strategy in ("cluster_top", "typical_clusters") and n_clusters is None:
        n_clusters = _batch_images(budget_images, budget_clicks, cost, min_cost)
        if strategy == "typical_clusters":       # room for every label and the batch
            n_clusters += 0 if centers is None else len(centers)
    picker = make_picker(strategy, score, cost, rank, seed, pool[0].method, x, centers,
                         n_clusters, min_cost)

    max_images = len(pool) if budget_images is None else min(budget_images, len(pool))
    limit = math.inf if budget_clicks is None else budget_clicks
    spent = 0.0  # summed in the order chosen, as total_cost is: it never passes the limit
    available = np.ones(len(pool), dtype=bool)
    chosen: list[tuple[int, str]] = []
    while len(chosen) < max_images:
        if cost is not None:
            available &= spent + cost <= limit
        picked = picker.pick(available)
        if picked is None:
            break
        i, reason = picked
        chosen.append((i, reason))
        available[i] = False
        if cost is not None:
            spent += float(cost[i])

    for r, (i, reason) in enumerate(chosen):
        result.items.append(SelectedImage(
            image_id=ids[i], rank=r, score=float(score[i]),
            cost=None if cost is None else float(cost[i]), reason=reason,
            persons=pool[i].persons_worst_first(),
            uncalibrated_cost=None if cost is raw_cost else float(raw_cost[i]),
            cost_features=pool[i].cost_features))
    result.total_score = float(sum(score[i] for i, _ in chosen))
    if cost is not None:
        result.total_cost = float(sum(cost[i] for i, _ in chosen))
    budget = _budget_text(budget_images, budget_clicks)
    if len(chosen) == len(pool):
        result.took_whole_pool = True
        result.message = (f"the pool of {_count(len(pool), 'unlabeled image')} is within the "
                          f"budget ({budget}): took all {len(pool)}")
    elif not chosen and cost is not None and budget_images != 0:
        result.message = (f"no image fits the budget ({budget}); the cheapest needs "
                          f"{cost.min():.3g} clicks")
    else:
        result.message = (f"chose {len(chosen)} of {_count(len(pool), 'unlabeled image')} "
                          f"(budget {budget})")
        if cost is not None:
            result.message += f"; {result.total_cost:.4g} predicted clicks"
            if calibration is not None:
                result.message += (f" (calibrated on {calibration.pairs} labeled images)"
                                   if calibration.fitted else f" ({calibration.note})")
    return result

"""Where a pose detector's keypoint AP goes: its errors by kind (Ronchi and Perona, "Benchmarking
and Error Diagnosis in Multi-Instance Pose Estimation", ICCV 2017) and the AP with each kind
set right.

Each prediction, in the order of its score, is matched to the ground-truth person of its
image it fits best (OKS above 0.1) among those still free; each labelled keypoint of a matched
pair is then, by its OKS term: `good` (0.85 or more), `jitter` (0.5 to 0.85), `inversion`
(under 0.5, but 0.5 or more at its labelled left/right partner's place), `swap` (under 0.5,
but 0.5 or more at the same keypoint of another person of the image) or `miss`. The AP
(pycocotools) is taken as predicted, with each kind's keypoints moved onto the ground truth
in turn and with all large errors moved, and with every prediction scored by its true OKS
(what a perfect ranking would give).
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from clickpose.evaluate.ap import evaluate_ap
from clickpose.keypoints import KeypointSchema
from selection.oks import keypoint_similarities

GOOD, ERROR = 0.85, 0.5   # OKS terms: at least GOOD is right; under ERROR is a large error
MIN_MATCH_OKS = 0.1
KINDS = ("good", "jitter", "inversion", "swap", "miss")
LARGE = ("inversion", "swap", "miss")


def triplets_of(item: dict) -> np.ndarray:
    """(K, 3) x, y, v of a COCO annotation or result, a new float64 array."""
    return np.array(item["keypoints"], dtype=np.float64).reshape(-1, 3)


class Person:
    """One ground-truth person: keypoints (K, 2) pixels, labelled (K,) bool, area."""

    def __init__(self, annotation: dict):
        triplets = triplets_of(annotation)
        self.keypoints, self.labelled = triplets[:, :2], triplets[:, 2] > 0
        self.area = float(annotation["area"])

    def terms(self, keypoints: np.ndarray, sigmas: np.ndarray,
              order: np.ndarray | None = None) -> np.ndarray:
        """Each keypoint's OKS term against this person's, or against its keypoint `order[k]`."""
        truth = self.keypoints if order is None else self.keypoints[order]
        return keypoint_similarities(((keypoints - truth) ** 2).sum(-1), self.area, sigmas)

    def oks(self, keypoints: np.ndarray, sigmas: np.ndarray) -> float:
        return float(self.terms(keypoints, sigmas)[self.labelled].mean())


def persons_by_image(dataset: dict) -> dict[int, list[Person]]:
    persons: dict[int, list[Person]] = {}
    for a in dataset["annotations"]:
        if not a.get("iscrowd", 0) and a.get("num_keypoints", 0) > 0:
            persons.setdefault(a["image_id"], []).append(Person(a))
    return persons


def match(results: list[dict], persons: dict[int, list[Person]], sigmas: np.ndarray
          ) -> list[tuple[int, Person, float]]:
    """(result index, person, OKS) per matched prediction, greedily in score order."""
    taken: set[int] = set()
    matches = []
    for i in sorted(range(len(results)), key=lambda i: -results[i]["score"]):
        keypoints = triplets_of(results[i])[:, :2]
        free = [p for p in persons.get(results[i]["image_id"], []) if id(p) not in taken]
        scored = [(p.oks(keypoints, sigmas), p) for p in free if p.labelled.any()]
        if scored:
            oks, best = max(scored, key=lambda pair: pair[0])
            if oks > MIN_MATCH_OKS:
                taken.add(id(best))
                matches.append((i, best, oks))
    return matches


def classify(keypoints: np.ndarray, person: Person, others: list[Person],
             schema: KeypointSchema) -> list[str | None]:
    """Each keypoint's kind (None where the person has no label)."""
    sigmas = schema.sigmas_array
    terms = person.terms(keypoints, sigmas)
    partner = np.asarray(schema.flip_permutation)
    # An unlabelled partner sits at COCO's (0, 0): no keypoint can be inverted onto it.
    flipped = np.where(person.labelled[partner], person.terms(keypoints, sigmas, partner), 0.0)
    near_other = np.zeros(len(terms), dtype=bool)
    for other in others:
        near_other |= other.labelled & (other.terms(keypoints, sigmas) >= ERROR)
    kinds: list[str | None] = []
    for k, term in enumerate(terms):
        if not person.labelled[k]:
            kinds.append(None)
        elif term >= GOOD:
            kinds.append("good")
        elif term >= ERROR:
            kinds.append("jitter")
        elif flipped[k] >= ERROR:
            kinds.append("inversion")
        else:
            kinds.append("swap" if near_other[k] else "miss")
    return kinds


def diagnose(results: list[dict], dataset: dict, schema: KeypointSchema) -> list[dict]:
    """The classes (a dict, kind "classes") and one dict per correction (kind "ap"); see the
    module's docstring. results: COCO keypoint results; dataset: the COCO ground truth."""
    def ap_line(fixed: str, corrected: list[dict]) -> dict:
        stats = evaluate_ap(dataset, corrected, schema).stats
        return {"kind": "ap", "fixed": fixed,
                **{name: round(stats[name], 4) for name in ("AP", "AP50", "AP75")}}

    as_predicted = ap_line("nothing", results)  # first: bad results are refused by name here
    sigmas = schema.sigmas_array
    persons = persons_by_image(dataset)
    matches = match(results, persons, sigmas)
    kinds_of: dict[int, list[str | None]] = {}
    counts: Counter = Counter()
    miss_types: Counter = Counter()
    miss_distances = []
    for i, person, _ in matches:
        keypoints = triplets_of(results[i])[:, :2]
        others = [p for p in persons[results[i]["image_id"]] if p is not person]
        kinds_of[i] = classify(keypoints, person, others, schema)
        for k, kind in enumerate(kinds_of[i]):
            if kind is None:
                continue
            counts[kind] += 1
            if kind == "miss":
                miss_types[schema.keypoints[k]] += 1
                miss_distances.append(float(np.linalg.norm(keypoints[k] - person.keypoints[k])
                                            / np.sqrt(max(person.area, 1.0))))
    labelled = sum(counts.values())
    lines = [{"kind": "classes", "predictions": len(results), "matched": len(matches),
              "persons": sum(len(v) for v in persons.values()),
              "counts": {kind: counts[kind] for kind in KINDS},
              "shares": {kind: round(counts[kind] / max(labelled, 1), 4) for kind in KINDS},
              "misses_by_keypoint": dict(miss_types.most_common()),
              "miss_median_distance_in_scales": (round(float(np.median(miss_distances)), 3)
                                                 if miss_distances else None)}]
    truth = {i: person for i, person, _ in matches}

    def with_kinds_fixed(chosen: tuple[str, ...]) -> list[dict]:
        corrected = []
        for i, result in enumerate(results):
            triplets = triplets_of(result)
            for k, kind in enumerate(kinds_of.get(i, [])):
                if kind in chosen:
                    triplets[k, :2] = truth[i].keypoints[k]
            corrected.append({**result, "keypoints": triplets.flatten().tolist()})
        return corrected

    lines.append(as_predicted)
    for chosen in [("jitter",), *((kind,) for kind in LARGE), LARGE]:
        lines.append(ap_line("+".join(chosen), with_kinds_fixed(chosen)))
    oks_of = {i: oks for i, _, oks in matches}
    lines.append(ap_line("ranking", [{**r, "score": oks_of.get(i, 0.0)}
                                     for i, r in enumerate(results)]))
    return lines

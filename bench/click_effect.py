"""What a click changes: does the model use it to fix the rest of the person?

    .venv/bin/python bench/click_effect.py --checkpoint RUN/last [--data DIR] [--images N]
        [--probe-images N] [--large 0.15] [--threads N]

Three measurements on the val images (default: the synthetic bench's seed 1005, its tuning
set), each printed as a JSON line after the machine:

  click_gain   `refine` NoC as the bench runs it, every click recorded: the clicked person's
               OKS with the click alone (what `model-only` gives) against its OKS once the
               model has re-predicted it, and how often each other keypoint moves closer /
               farther (its OKS term by 0.05 or more).
  error_share  the model's first poses of the matched persons: clicks per person to reach
               OKS 0.9 when a click sets only its keypoint (the worst in pixels first, as the
               protocol clicks), as they are and with every keypoint off by more than --large x
               the person scale (sqrt(area)) counted as fixed for free: the share of the
               clicks that large errors cost, which is what re-prediction has to fix.
  pin_probe    ground-truth poses with one left/right pair exchanged enter the keypoint
               decoder as denoising persons (the path trained with pose errors), from their
               ground-truth boxes: how often the exchanged keypoint comes back within 0.1 x the
               person scale with nothing pinned, with its partner pinned where it belongs, and
               with every other keypoint pinned; the pose without the exchange is the reference.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.evaluation import emit, first_images, ground_truth
from bench.latency import machine
from bench.synthetic_sets import tuning_images
from clickpose.evaluate import NocSettings, run_noc
from clickpose.evaluate.inputs import keypoint_category
from clickpose.evaluate.matching import TargetPersons
from clickpose.evaluate.sources import checkpoint_editors
from clickpose.train.loop import default_cpu_threads
from selection.oks import keypoint_similarities

MOVED = 0.05           # an OKS term that changes by this much moved for real
NOC_OKS = 0.9          # a person done, as AP 90 needs
REPAIRED = 0.1         # a keypoint back within this fraction of the person scale
PROBE_CASES = ("reference", "nothing_pinned", "partner_pinned", "others_pinned")


class ClickRecorder:
    """An editor that records, for every click, the clicked person before and after."""

    def __init__(self, editor, targets: TargetPersons, sigmas: np.ndarray, records: list):
        self._editor, self._targets, self._sigmas = editor, targets, sigmas
        self._records = records
        self._clicked: set[int] = set()

    def __getattr__(self, name):
        return getattr(self._editor, name)

    @property
    def poses(self):
        return self._editor.poses

    def click_many(self, clicks):
        before = self._editor.poses.copy()
        after = self._editor.click_many(clicks)
        for person, k, x, y, _ in clicks:
            self._records.append(self._record(before, after, person, k, (x, y)))
        self._clicked.update(c[0] for c in clicks)
        return after

    def _record(self, before, after, person: int, k: int, xy) -> dict:
        t = self._targets
        at_click = np.all(np.isclose(t.keypoints[:, k], xy), -1) & (t.visibility[:, k] > 0)
        g = int(np.flatnonzero(at_click)[0])  # the person the click was meant for
        similarities = lambda kp: keypoint_similarities(
            ((kp - t.keypoints[g]) ** 2).sum(-1), t.areas[g], self._sigmas)
        return {"first": person not in self._clicked, "labelled": t.visibility[g] > 0,
                "clicked": k, "before": similarities(before.keypoints[person]),
                "after": similarities(after.keypoints[person]),
                "errors": np.linalg.norm(before.keypoints[person] - t.keypoints[g], axis=-1),
                "scale": float(np.sqrt(max(t.areas[g], 1.0)))}


def _click_only(record: dict) -> np.ndarray:
    """The person's OKS terms had the click set only its own keypoint (model-only)."""
    terms = record["before"].copy()
    terms[record["clicked"]] = 1.0
    return terms


def click_gain(records: list[dict]) -> dict:
    """Per click: the person's OKS with the click alone vs after re-prediction."""
    only = np.array([_click_only(r)[r["labelled"]].mean() for r in records])
    after = np.array([r["after"][r["labelled"]].mean() for r in records])
    closer = farther = others = 0
    for r in records:
        # Keypoints clicked in earlier rounds are pinned (their term is 1): they cannot move.
        free = r["labelled"] & (r["before"] < 1.0)
        free[r["clicked"]] = False
        delta = r["after"][free] - r["before"][free]
        closer += int((delta >= MOVED).sum())
        farther += int((delta <= -MOVED).sum())
        others += int(free.sum())
    mean = lambda values: round(float(values.mean()), 4) if len(only) else None
    return {"kind": "click_gain", "clicks": len(records),
            "oks_click_only": mean(only), "oks_after_refine": mean(after),
            "refine_better": mean(after > only + 1e-3),
            "refine_worse": mean(after < only - 1e-3),
            "other_keypoints": others,
            "other_closer": round(closer / max(others, 1), 4),
            "other_farther": round(farther / max(others, 1), 4)}


def clicks_to_oks(terms: np.ndarray, errors: np.ndarray, labelled: np.ndarray,
                  target: float = NOC_OKS, limit: int = 17) -> int:
    """Clicks that set one keypoint each, worst in pixels first, until the mean OKS term of
    the labelled keypoints reaches `target` (at most `limit`)."""
    terms, errors = terms.copy(), np.where(labelled, errors, -1.0)
    clicks = 0
    while terms[labelled].mean() < target and clicks < limit and errors.max() > 0:
        k = int(np.argmax(errors))
        terms[k], errors[k] = 1.0, -1.0
        clicks += 1
    return clicks


def error_share(records: list[dict], large: float) -> dict:
    """Clicks per person to OKS 0.9 on the first poses, as they are and with large errors free."""
    as_is, large_free = [], []
    large_keypoints = labelled = 0
    for r in (r for r in records if r["first"] and r["labelled"].any()):
        big = r["labelled"] & (r["errors"] > large * r["scale"])
        as_is.append(clicks_to_oks(r["before"], r["errors"], r["labelled"]))
        large_free.append(clicks_to_oks(np.where(big, 1.0, r["before"]),
                                        np.where(big, 0.0, r["errors"]), r["labelled"]))
        large_keypoints += int(big.sum())
        labelled += int(r["labelled"].sum())
    mean = lambda values: round(statistics.fmean(values), 3) if values else None
    return {"kind": "error_share", "persons": len(as_is), "large": large,
            "large_keypoint_share": round(large_keypoints / max(labelled, 1), 4),
            "clicks_per_person": mean(as_is), "clicks_per_person_large_free": mean(large_free),
            "share_of_clicks_on_large": (round(1 - sum(large_free) / sum(as_is), 4)
                                         if sum(as_is) else None)}


def _probe_persons(target: dict, pairs: list[tuple[int, int]]):
    """(keypoints, pinned, person, partner, measured) per probe case of every person and
    labelled flip pair of one image's normalized target."""
    keypoints, weights = target["keypoints"], target["keypoint_weights"] > 0
    for p in range(len(keypoints)):
        for i, j in pairs:
            if not (weights[p, i] and weights[p, j]):
                continue
            exchanged = keypoints[p].clone()
            exchanged[[i, j]] = keypoints[p, [j, i]]
            none = torch.zeros(len(weights[p]), dtype=torch.bool)
            partner = none.clone()
            partner[i] = True
            others = weights[p].clone()
            others[j] = False
            yield "reference", keypoints[p], none, p, j
            yield "nothing_pinned", exchanged, none, p, j
            yield "partner_pinned", exchanged, partner, p, j
            yield "others_pinned", exchanged, others, p, j


@torch.no_grad()
def pin_probe(model, data_dir: Path, images: int) -> dict:
    """Exchanged left/right keypoints through the denoising path: repaired how often?"""
    from clickpose.data import collate_batch, eval_transforms, load_coco_dataset
    from clickpose.model.criterion import normalize_targets

    config = model.config
    dataset = load_coco_dataset(data_dir)
    dataset.transforms = eval_transforms(config.image_size, config.max_size,
                                         mean=config.pixel_mean, std=config.pixel_std)
    pairs = [tuple(pair) for pair in model.schema.flip_pairs]
    distances: dict[str, list[float]] = {case: [] for case in PROBE_CASES}
    device = next(model.parameters()).device
    for index in range(min(images, len(dataset))):
        batch, mask, targets = collate_batch([dataset[index]])
        target = normalize_targets(targets)[0]
        cases = list(_probe_persons(target, pairs))
        if not cases:
            continue
        state = model.encode(batch.to(device), mask.to(device))
        humans = model.detect_humans(state)
        owners = torch.tensor([c[3] for c in cases])
        dn = {"boxes": target["boxes"][owners][None].to(device),
              "keypoints": torch.stack([c[1] for c in cases])[None].to(device),
              "pinned": torch.stack([c[2] for c in cases])[None].to(device),
              "valid": torch.ones(1, len(cases), dtype=torch.bool, device=device)}
        out = model.decode_keypoints(state, humans, dn=dn)["dn"]["pred_keypoints"][0].cpu()
        size = torch.as_tensor(target["scale"], dtype=torch.float32)
        for d, (case, _, _, person, measured) in enumerate(cases):
            error = ((out[d, measured] - target["keypoints"][person, measured]) * size).norm()
            distances[case].append(float(error / target["area"][person].clamp(min=1.0).sqrt()))
    return {"kind": "pin_probe", "pairs": len(distances["reference"]),
            **{f"repaired_{case}": (round(float(np.mean(np.array(v) < REPAIRED)), 4)
                                    if v else None) for case, v in distances.items()},
            **{f"median_error_{case}": (round(float(np.median(v)), 4) if v else None)
               for case, v in distances.items()}}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=None,
                        help="default: the synthetic bench's tuning images (seed 1005)")
    parser.add_argument("--images", type=int, default=100, help="images for the NoC run")
    parser.add_argument("--probe-images", type=int, default=40)
    parser.add_argument("--large", type=float, default=0.15,
                        help="a large error: more than this x the person scale")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    args.data = args.data or tuning_images()
    torch.set_num_threads(args.threads or default_cpu_threads(0))
    device = "cuda" if torch.cuda.is_available() else "cpu"  # as checkpoint_editors picks
    emit(machine(device))
    dataset, schema = ground_truth(args.data)
    dataset = first_images(dataset, args.images)
    editors = checkpoint_editors(args.checkpoint, args.data, dataset, "refine", schema)
    images = {im["id"]: im for im in dataset["images"]}
    category_id = keypoint_category(dataset, "ground truth")["id"]
    annotations: dict[int, list[dict]] = {}
    for a in dataset["annotations"]:  # grouped once, as run_noc does
        if a["category_id"] == category_id:
            annotations.setdefault(a["image_id"], []).append(a)
    records: list[dict] = []

    def recorded(image_id: int):
        image = images[image_id]
        targets = TargetPersons.from_annotations(annotations.get(image_id, []), image["width"],
                                                 image["height"], schema.num_keypoints)
        return ClickRecorder(editors(image_id), targets, schema.sigmas_array, records)

    result = run_noc(dataset, recorded, NocSettings(targets=(90,), mode="refine"), schema=schema)
    lines = [{"kind": "noc", "mode": "refine", "n_images": len(result.images),
              "NoC@90": result.summary()["targets"]["90"]["NoC"]},
             click_gain(records), error_share(records, args.large)]
    from clickpose.model.checkpoint import load_model
    model = load_model(args.checkpoint, device=device).eval()
    lines.append(pin_probe(model, args.data, args.probe_images))
    for line in lines:
        emit({"checkpoint": str(args.checkpoint), "data": str(args.data), **line})
    return lines


if __name__ == "__main__":
    main()

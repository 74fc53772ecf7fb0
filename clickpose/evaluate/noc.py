"""NoC: the number of clicks a simulated annotator needs before an image's OKS AP reaches a target.

Official protocol (Click-Pose's NoC evaluation): match the top-20 predicted persons to the
ground truth once; then, round after round until the image's AP reaches the target or 17
rounds pass, click once per matched person on its worst keypoint (largest error over labelled
keypoints), putting it at its ground-truth position, and let the editor re-predict once. NoC is
the number of rounds; the human cost is also counted in keypoint clicks.

Annotator protocol: the same clicks, plus what the annotation tool lets a person do and the
official loop cannot: confirm a clicked person (score 1, free), delete a false positive ranked
above a corrected person (1 click) and draw the box of a person the model missed (2 clicks).

Modes differ only in the editor: model-only (a click moves that keypoint), refine (the model's
interactive session re-predicts the rest) and manual (no prediction: every labelled keypoint
is clicked, one per person per round, after drawing every person's box; the boxes cost 2
clicks each in the annotator protocol and nothing in the official one). Manual images are
never capped: NoC is the round when the last keypoint is placed, whatever the target.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from clickpose.evaluate.ap import image_evaluators, run_cocoeval
from clickpose.evaluate.editor import ManualEditor, PoseEditor
from clickpose.evaluate.image_ap import ImageAp
from clickpose.evaluate.inputs import keypoint_category, schema_for
from clickpose.evaluate.matching import TOPK, TargetPersons, keypoint_errors, match_persons
from clickpose.keypoints import KeypointSchema
from clickpose.poses import Poses

MODES = ("model-only", "refine", "manual")
PROTOCOLS = ("official", "annotator")
DELETE_CLICKS, BOX_CLICKS = 1, 2


@dataclass
class NocSettings:
    targets: tuple[int, ...] = (85, 90, 95)   # AP targets in percent
    mode: str = "model-only"
    protocol: str = "official"
    max_rounds: int = 17
    topk: int = TOPK
    error: str = "l2px"           # worst keypoint by pixel distance; 'l1norm' = official loss
    min_score: float = 0.0        # persons scored below are dropped before the first round
    rescore_clicked: bool = False  # official protocol variant: a clicked person's score := 1
    ap_after: int = 5             # also report AP after k = 0..ap_after rounds
    dataset_ap: bool = True       # ... as COCO AP over the images too (pycocotools, slower)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown NoC mode '{self.mode}'; use one of {', '.join(MODES)}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"unknown NoC protocol '{self.protocol}'; use one of "
                             f"{', '.join(PROTOCOLS)}")
        if not self.targets or any(not 0 < t <= 100 for t in self.targets):
            raise ValueError(f"NoC targets {self.targets}: give AP targets in percent, "
                             "0 < t <= 100")
        self.targets = tuple(sorted(int(t) for t in self.targets))

    @property
    def confirms(self) -> bool:
        return self.protocol == "annotator" or self.rescore_clicked


@dataclass
class ImageRun:
    """One image's simulation: AP and cumulative costs after 0, 1, 2, ... rounds."""
    image_id: int
    n_gt: int
    n_pred: int
    n_matched: int
    n_unmatched_gt: int
    labelled_kpts: int
    ap: list[float] = field(default_factory=list)
    kpt_clicks: list[int] = field(default_factory=list)
    action_clicks: list[int] = field(default_factory=list)  # deletions + drawn boxes, in clicks
    deleted: int = 0
    boxes_drawn: int = 0
    fp_outranks: bool = False
    unmatched_left: int = 0        # persons matched to no ground truth, still there at the end
    done_round: int | None = None  # manual mode: the round when every keypoint is placed
    max_rounds: int = 17
    poses_after: list[Poses] = field(default_factory=list, repr=False)

    def rounds_to(self, target: int) -> tuple[int, bool]:
        """(rounds, reached) for an AP target in percent; capped runs count max_rounds."""
        if self.done_round is not None:
            return self.done_round, True
        threshold = target / 100
        for r, ap in enumerate(self.ap):
            if ap >= threshold:
                return r, True
        return self.max_rounds, False

    def outcome(self, target: int) -> dict:
        rounds, reached = self.rounds_to(target)
        r = min(rounds, len(self.kpt_clicks) - 1)
        return {"rounds": rounds, "reached": reached, "kpt_clicks": self.kpt_clicks[r],
                "official_clicks": rounds * self.n_matched,
                "total_clicks": self.kpt_clicks[r] + self.action_clicks[r]}

    def why_capped(self, target: int) -> str | None:
        if self.rounds_to(target)[1]:
            return None
        if self.n_unmatched_gt > 0 and self.boxes_drawn == 0:
            return "unmatched_gt"
        return "fp_outranks" if self.fp_outranks else "max_rounds"

    def to_dict(self, targets: tuple[int, ...]) -> dict:
        out = {k: v for k, v in asdict(self).items() if k not in ("poses_after", "max_rounds")}
        out["why_capped"] = self.why_capped(max(targets))
        out["targets"] = {str(t): self.outcome(t) for t in targets}
        return out


def _fp_outranks(poses: Poses, matched: dict[int, int]) -> bool:
    """Does an unmatched person score at least as high as some matched person?"""
    if not matched:
        return False
    lowest = min(poses.scores[p] for p in matched)
    return any(poses.scores[p] >= lowest for p in range(poses.num_persons) if p not in matched)


def _drop_low_scores(editor: PoseEditor, min_score: float) -> None:
    for p in reversed(range(editor.poses.num_persons)):
        if editor.poses.scores[p] < min_score:
            editor.remove_person(p)


def _click_worst(editor: PoseEditor, matched: dict[int, int], targets: TargetPersons,
                 settings: NocSettings) -> int:
    """One click per matched person on its worst labelled keypoint, all chosen on the poses
    the round starts from (as the official loop does); returns the clicks made. An editor
    that re-predicts (`click_many`, the model's session) takes the round's clicks at once."""
    poses = editor.poses
    clicks = []
    for person, g in sorted(matched.items()):
        errors = keypoint_errors(poses.keypoints[person], targets.keypoints[g],
                                 targets.visibility[g], targets.width, targets.height,
                                 settings.error)
        k = int(np.argmax(errors))
        if errors[k] <= 0:  # nothing left to correct on this person
            continue
        x, y = targets.keypoints[g, k]
        clicks.append((person, k, float(x), float(y), int(targets.visibility[g, k])))
    click_many = getattr(editor, "click_many", None)
    if click_many is not None:
        click_many(clicks)
    else:
        for click in clicks:
            editor.click(*click)
    if settings.confirms:
        for person, *_ in clicks:
            if editor.poses.scores[person] < 1:
                editor.confirm_person(person)
    return len(clicks)


def _delete_outranking(editor: PoseEditor, matched: dict[int, int],
                       ranks: list[int]) -> tuple[int, dict]:
    """Remove unmatched persons scored at or above a matched one; returns (count, new matching)."""
    if not matched:
        return 0, matched
    scores = editor.poses.scores
    lowest = min(scores[p] for p in matched)
    doomed = [p for p in range(len(scores)) if p not in matched and scores[p] >= lowest]
    for p in sorted(doomed, reverse=True):
        editor.remove_person(p)
        ranks.pop(p)
        matched = {(q - 1 if q > p else q): g for q, g in matched.items()}
    return len(doomed), matched


def _draw_missing(editor: PoseEditor, matched: dict[int, int], missing: list[int],
                  targets: TargetPersons, ranks: list[int]) -> dict[int, int]:
    for g in missing:
        poses = editor.add_person(targets.boxes[g])
        person = poses.num_persons - 1
        ranks.append(max(ranks, default=-1) + 1)
        matched = {**matched, person: g}
        if poses.scores[person] < 1:
            editor.confirm_person(person)
    return matched


def _initial_ranks(scores: np.ndarray) -> list[int]:
    """Each person's place in the score order (stable), kept as the order of the results.

    The official loop keeps its top-k queries in score order, so persons that later share a
    score (confirmed persons all have 1) rank among themselves as they first ranked.
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order))
    return ranks.tolist()


def _ranked(poses: Poses, ranks: list[int]) -> Poses:
    return poses.select(np.argsort(np.asarray(ranks, dtype=np.int64), kind="stable"))


def simulate_image(image_id: int, editor: PoseEditor, targets: TargetPersons,
                   evaluator: ImageAp, sigmas: np.ndarray, settings: NocSettings) -> ImageRun:
    """Correction rounds on one image (model-only or refine mode)."""
    _drop_low_scores(editor, settings.min_score)
    poses = editor.poses
    pairs = match_persons(poses.keypoints, poses.scores, targets, sigmas, settings.topk)
    matched = dict(pairs)
    missing = [g for g in range(targets.num_persons) if g not in matched.values()]
    run = ImageRun(image_id=image_id, n_gt=targets.num_persons, n_pred=poses.num_persons,
                   n_matched=len(matched), n_unmatched_gt=len(missing),
                   labelled_kpts=int(targets.labelled.sum()), max_rounds=settings.max_rounds)
    ranks = _initial_ranks(poses.scores)
    ranked = _ranked(poses, ranks)
    run.ap.append(evaluator.ap(ranked.keypoints, ranked.scores))
    run.kpt_clicks.append(0)
    run.action_clicks.append(0)
    run.poses_after.append(ranked)
    top = max(settings.targets) / 100
    for r in range(1, settings.max_rounds + 1):
        if run.ap[-1] >= top and r > settings.ap_after:
            break
        clicks = _click_worst(editor, matched, targets, settings)
        actions = 0
        if settings.protocol == "annotator":
            deleted, matched = _delete_outranking(editor, matched, ranks)
            matched = _draw_missing(editor, matched, missing, targets, ranks)
            run.deleted += deleted
            run.boxes_drawn += len(missing)
            actions = DELETE_CLICKS * deleted + BOX_CLICKS * len(missing)
            missing = []
        ranked = _ranked(editor.poses, ranks)
        run.ap.append(evaluator.ap(ranked.keypoints, ranked.scores))
        run.kpt_clicks.append(run.kpt_clicks[-1] + clicks)
        run.action_clicks.append(run.action_clicks[-1] + actions)
        if r <= settings.ap_after:
            run.poses_after.append(ranked)
    run.fp_outranks = _fp_outranks(editor.poses, matched)
    run.unmatched_left = editor.poses.num_persons - len(matched)
    return run


def simulate_manual(image_id: int, editor: PoseEditor, targets: TargetPersons,
                    evaluator: ImageAp, settings: NocSettings) -> ImageRun:
    """Labelling by hand: draw every person, then one keypoint click per person per round."""
    run = ImageRun(image_id=image_id, n_gt=targets.num_persons, n_pred=0, n_matched=0,
                   n_unmatched_gt=targets.num_persons,
                   labelled_kpts=int(targets.labelled.sum()), max_rounds=settings.max_rounds)
    start = editor.poses.num_persons
    for g in range(targets.num_persons):
        editor.add_person(targets.boxes[g])
    run.boxes_drawn = targets.num_persons
    box_clicks = BOX_CLICKS * targets.num_persons if settings.protocol == "annotator" else 0
    queues = [list(np.flatnonzero(targets.labelled[g])) for g in range(targets.num_persons)]
    run.ap.append(evaluator.ap(editor.poses.keypoints, editor.poses.scores))
    run.kpt_clicks.append(0)
    run.action_clicks.append(box_clicks)
    run.poses_after.append(editor.poses.copy())
    r = 0
    while any(queues):
        r += 1
        clicks = 0
        for g, queue in enumerate(queues):
            if queue:
                k = queue.pop(0)
                x, y = targets.keypoints[g, k]
                editor.click(start + g, int(k), float(x), float(y),
                             visible=int(targets.visibility[g, k]))
                clicks += 1
        run.ap.append(evaluator.ap(editor.poses.keypoints, editor.poses.scores))
        run.kpt_clicks.append(run.kpt_clicks[-1] + clicks)
        run.action_clicks.append(box_clicks)
        if r <= settings.ap_after:
            run.poses_after.append(editor.poses.copy())
    run.done_round = r
    return run


@dataclass
class NocResult:
    settings: NocSettings
    images: list[ImageRun]
    dataset_ap_after: dict[int, float]  # COCO AP over the NoC images after k rounds

    def summary(self) -> dict:
        n = len(self.images)
        out: dict = {"n_images": n, "mode": self.settings.mode,
                     "protocol": self.settings.protocol, "targets": {}}
        if n == 0:
            return out
        out["n_images_with_unmatched_gt"] = sum(1 for im in self.images if im.n_unmatched_gt)
        out["labelled_kpts_per_image"] = float(np.mean([im.labelled_kpts for im in self.images]))
        out["persons_per_image"] = float(np.mean([im.n_gt for im in self.images]))
        for t in self.settings.targets:
            outcomes = [im.outcome(t) for im in self.images]
            capped = [im.why_capped(t) for im in self.images]
            out["targets"][str(t)] = {
                "NoC": float(np.mean([o["rounds"] for o in outcomes])),
                "mean_kpt_clicks": float(np.mean([o["kpt_clicks"] for o in outcomes])),
                "mean_official_clicks": float(np.mean([o["official_clicks"] for o in outcomes])),
                "mean_total_clicks": float(np.mean([o["total_clicks"] for o in outcomes])),
                "n_never_reached": sum(1 for o in outcomes if not o["reached"]),
                "n_never_reached_with_unmatched_gt": capped.count("unmatched_gt"),
                "n_never_reached_fp_outranks": capped.count("fp_outranks"),
                "n_never_reached_max_rounds": capped.count("max_rounds"),
                "n_zero_clicks": sum(1 for o in outcomes if o["rounds"] == 0),
            }
        out["mean_image_ap_after"] = {
            str(k): float(np.mean([im.ap[min(k, len(im.ap) - 1)] for im in self.images]))
            for k in range(self.settings.ap_after + 1)}
        out["dataset_ap_after"] = {str(k): v for k, v in self.dataset_ap_after.items()}
        out["deleted_per_image"] = float(np.mean([im.deleted for im in self.images]))
        out["boxes_drawn_per_image"] = float(np.mean([im.boxes_drawn for im in self.images]))
        # False positives that no round had to delete: a clean label set still costs a
        # click each, which NoC does not count.
        out["unmatched_left_per_image"] = float(np.mean([im.unmatched_left for im in self.images]))
        return out

    def to_dict(self) -> dict:
        return {"settings": {**asdict(self.settings), "targets": list(self.settings.targets)},
                "summary": self.summary(),
                "per_image": [im.to_dict(self.settings.targets) for im in self.images]}


def _dataset_ap_after(dataset: dict, runs: list[ImageRun], sigmas: np.ndarray, category_id: int,
                      rounds: int) -> dict[int, float]:
    """COCO AP over the simulated images with each image's poses after k rounds."""
    image_ids = {run.image_id for run in runs}
    # Only what keypoint evaluation reads: COCOeval copies and indexes it on every call.
    light = {"images": [im for im in dataset["images"] if im["id"] in image_ids],
             "categories": dataset["categories"],
             "annotations": [{k: v for k, v in a.items() if k != "segmentation"}
                             for a in dataset["annotations"] if a["image_id"] in image_ids]}
    out = {}
    for k in range(rounds + 1):
        results = []
        for run in runs:
            poses = run.poses_after[min(k, len(run.poses_after) - 1)]
            results += poses.to_coco_results(run.image_id, category_id)
        out[k] = float(run_cocoeval(light, results, sigmas).stats[0]) if runs else 0.0
    return out


def noc_images(dataset: dict, schema: KeypointSchema) -> dict[int, ImageAp]:
    """Images with at least one person that counts for OKS AP (the official NoC image set)."""
    return {i: ev for i, ev in image_evaluators(dataset, schema).items() if ev.has_persons}


def run_noc(dataset: dict, editor_for: Callable[[int], PoseEditor] | None,
            settings: NocSettings | None = None, schema: KeypointSchema | None = None,
            progress: bool = False) -> NocResult:
    """Simulate every image with annotated persons; `editor_for(image_id)` gives its editor."""
    settings = settings or NocSettings()
    schema = schema_for(dataset, schema, "ground truth")
    category_id = keypoint_category(dataset, "ground truth")["id"]
    sigmas = schema.sigmas_array
    images = {im["id"]: im for im in dataset["images"]}
    annotations: dict[int, list[dict]] = {}
    for a in dataset["annotations"]:
        if a["category_id"] == category_id:
            annotations.setdefault(a["image_id"], []).append(a)
    evaluators = noc_images(dataset, schema)
    if settings.mode == "manual" and editor_for is None:
        editor_for = lambda _image_id: ManualEditor(schema.num_keypoints)
    if editor_for is None:
        raise ValueError(f"NoC mode '{settings.mode}' needs predictions or a model to edit")
    runs = []
    for image_id in _progress(list(evaluators), progress, f"NoC ({settings.mode})"):
        image = images[image_id]
        targets = TargetPersons.from_annotations(annotations.get(image_id, []), image["width"],
                                                 image["height"], schema.num_keypoints)
        editor = editor_for(image_id)
        if settings.mode == "manual":
            run = simulate_manual(image_id, editor, targets, evaluators[image_id], settings)
        else:
            run = simulate_image(image_id, editor, targets, evaluators[image_id], sigmas, settings)
        runs.append(run)
    dataset_ap = (_dataset_ap_after(dataset, runs, sigmas, category_id, settings.ap_after)
                  if settings.dataset_ap else {})
    return NocResult(settings=settings, images=runs, dataset_ap_after=dataset_ap)


def _progress(items: list, show: bool, description: str):
    if not show:
        return items
    from rich.progress import track

    return track(items, description=description, transient=True)

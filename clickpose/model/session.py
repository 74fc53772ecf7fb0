"""Interactive correction of one image's poses (the human-feedback loop of Click-Pose).

The backbone, the encoder and the human detection run once when the session opens; each
click re-runs only the keypoint decoder, for every person at once, with every clicked
keypoint pinned. A decode starts each person from its starting pose (the first
prediction, another detector's pose, or the model's proposal for a drawn box) with the
clicks written in, so the result depends on the clicks made, not on their history; a
clicked keypoint stays exactly where it was clicked until it is clicked again.

Person indices are stable: persons keep their order (new ones are appended), and the
poses are not re-sorted by score.
"""
from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from clickpose.model.box_ops import box_cxcywh_to_xyxy, box_iou
from clickpose.model.click_propagation import heatmap_evidence, propagated, reseeded_starts
from clickpose.model.clickpose_model import boxes_xyxy_to_normalized
from clickpose.model.human_decoder import HumanState
from clickpose.model.inference import EvalTransform, visibility_from_scores
from clickpose.poses import Poses


@dataclass
class _Person:
    content: Tensor                 # (D,) box-token content
    box: Tensor                     # (4,) reference box, cxcywh normalized
    start_keypoints: Tensor         # (K, 2) normalized: where a decode starts this person
    source: str                     # "detected", "given" (initial_poses) or "drawn"
    score: float                    # person score shown when not predicted anew
    clicks: dict[int, tuple[float, float, int]] = field(default_factory=dict)  # k -> x, y, v
    visibility: dict[int, int] = field(default_factory=dict)  # user-set COCO v per keypoint
    confirmed: bool = False
    candidate: int | None = None    # index among the session's detection candidates


# A drawn box that overlaps a detection candidate by this IoU starts from the candidate's
# pose: the decoder repairs a near pose far better than it finds one from the heatmaps
# alone (bench/drawn_boxes.py).
ADOPT_CANDIDATE_IOU = 0.5
# Without a candidate, the proposal is decoded this many times, each from the last.
DRAWN_PROPOSAL_PASSES = 2


@dataclass
class _Candidates:
    """Every person the human decoder proposed for the image, as first decoded."""
    boxes: Tensor                   # (N, 4) cxcywh normalized
    keypoints: Tensor               # (N, K, 2) normalized: where a decode of it starts


class InteractiveSession:
    """Poses of one image under correction: `poses`, `click`, `click_many`, `add_person`,
    `remove_person`, `set_visibility`, `confirm_person`, `undo`. Every action returns the
    current Poses.
    `refine(poses)` asks the decoder to repair other poses without changing the session."""

    def __init__(self, model, image, initial_poses: Poses | None = None,
                 min_score: float = 0.0, max_persons: int | None = None,
                 adopt_candidate_iou: float | None = ADOPT_CANDIDATE_IOU,
                 proposal_passes: int = DRAWN_PROPOSAL_PASSES, use_click_prior: bool = True):
        """adopt_candidate_iou (None: never) and proposal_passes: how `add_person` proposes.
        use_click_prior: a click also moves its person's other keypoints by the checkpoint's
        click prior (clickpose.model.click_propagation), when the checkpoint has one."""
        if proposal_passes < 1:
            raise ValueError(f"proposal_passes={proposal_passes}; at least one decoder pass")
        self.model = model
        self.click_prior = getattr(model, "click_prior", None) if use_click_prior else None
        self._evidence: Tensor | None = None  # the heatmaps' log-probabilities, on first need
        self.adopt_candidate_iou = adopt_candidate_iou
        self.proposal_passes = proposal_passes
        self.schema = model.schema
        device = next(model.parameters()).device
        images, mask, self.image_size = EvalTransform.from_config(model.config)(image, device)
        h, w = self.image_size
        self._scale = torch.tensor([w, h], dtype=torch.float32, device=device)
        self._history: list[tuple[list[_Person], Poses]] = []
        self._candidates: _Candidates | None = None  # opened on initial_poses: made on demand
        with self._inference():
            self._state = model.encode(images, mask)
            self._state.keypoint_values = model.keypoint_decoder.project_memory(self._state)
            if initial_poses is None:
                self._persons, self.poses = self._detect(min_score, max_persons)
            else:
                self._persons, self.poses = self._adopt(initial_poses)

    # ---- opening ---------------------------------------------------------------------
    def _detect(self, min_score: float, max_persons: int | None) -> tuple[list[_Person], Poses]:
        humans, outputs = self._decode_candidates()
        # Every candidate stays (the NoC protocol matches among the top-k), best first;
        # predictions drop duplicates (ClickPose.postprocess), and a session opened on them
        # (initial_poses) has none.
        scores = outputs["pred_scores"][0]
        order = torch.argsort(scores, descending=True)
        order = order[scores[order] >= min_score][:max_persons]
        persons = [_Person(content=humans.content[0, i], box=outputs["start_boxes"][0, i],
                           start_keypoints=outputs["start_keypoints"][0, i], source="detected",
                           score=float(scores[i]), candidate=i) for i in order.tolist()]
        picked = {k: v[:, order] for k, v in outputs.items() if k.startswith("pred_")}
        return persons, self._to_poses(picked, persons)

    def _adopt(self, poses: Poses) -> tuple[list[_Person], Poses]:
        """Another detector's poses become the persons, as they are, until the first action."""
        if poses.num_persons and poses.num_keypoints != self.schema.num_keypoints:
            raise ValueError(
                f"initial_poses have {poses.num_keypoints} keypoints per person; the model's "
                f"schema '{self.schema.name}' has {self.schema.num_keypoints}")
        device = self._scale.device
        boxes = boxes_xyxy_to_normalized(poses.boxes, self.image_size).to(device)
        keypoints = (torch.as_tensor(poses.keypoints, dtype=torch.float32, device=device)
                     / self._scale).clamp(0.0, 1.0)
        content = self.model.humans_from_boxes(boxes[None]).content[0]
        persons = [_Person(content=content[i], box=boxes[i], start_keypoints=keypoints[i],
                           source="given", score=float(poses.scores[i]))
                   for i in range(poses.num_persons)]
        return persons, poses.copy()

    # ---- actions ---------------------------------------------------------------------
    def click(self, person: int, keypoint: int | str, x: float, y: float,
              visible: int = 2) -> Poses:
        """Put `keypoint` of `person` at pixel (x, y) (COCO v = visible) and refine everyone."""
        return self.click_many([(person, keypoint, x, y, visible)])

    def click_many(self, clicks) -> Poses:
        """Several clicks (person, keypoint, x, y, visible) at once, then one refinement:
        one action for undo (a round of corrections, as the official NoC loop makes them)."""
        checked = []
        for person, keypoint, x, y, visible in clicks:
            p, k = self._person(person), self._keypoint(keypoint)
            if visible not in (1, 2):
                raise ValueError(
                    f"click: visible={visible}; use 1 (occluded) or 2 (visible), or "
                    "set_visibility(person, keypoint, 0) for a keypoint that is absent")
            checked.append((p, k, float(x), float(y), int(visible)))
        if not checked:
            return self.poses
        self._push()
        for p, k, x, y, visible in checked:
            p.clicks[k] = (x, y, visible)
            p.visibility.pop(k, None)
        return self._decode()

    def add_person(self, box_xyxy) -> Poses:
        """A person the model missed, from its box in pixels; the model proposes its keypoints.

        The proposal starts from the pose of the detection candidate that best overlaps the
        box (IoU >= adopt_candidate_iou, not already a person of the session): a person the
        model saw but ranked low or lost. Without one, from the heatmaps' pose for the box,
        decoded `proposal_passes` times, each pass from the last. The drawn box stays the
        person's box."""
        box = boxes_xyxy_to_normalized(box_xyxy, self.image_size)[0].to(self._scale.device)
        self._push()
        with self._inference():
            drawn = self.model.humans_from_boxes(box[None, None])
            content = drawn.content[0, 0]
            candidate = self._overlapping_candidate(box)
            if candidate is not None:
                start, passes = self._candidates.keypoints[candidate], 1
            else:
                start = self.model.default_keypoints(box[None, None], self._state)[0, 0]
                passes = self.proposal_passes
            for _ in range(passes - 1):  # the person alone, from the last pass's pose
                start = self.model.decode_keypoints(
                    self._state, drawn, start[None, None])["pred_keypoints"][0, 0]
        self._persons.append(_Person(content=content, box=box, start_keypoints=start,
                                     source="drawn", score=1.0, candidate=candidate))
        poses = self._decode()
        # Its proposal is where later decodes start, like a detected person's prediction.
        self._persons[-1].start_keypoints = (torch.as_tensor(
            poses.keypoints[-1], dtype=torch.float32, device=box.device) / self._scale).clamp(0, 1)
        return poses

    def remove_person(self, person: int) -> Poses:
        self._person(person)
        self._push()
        del self._persons[person]
        keep = np.ones(self.poses.num_persons, dtype=bool)
        keep[person] = False
        self.poses = self.poses.select(keep)
        return self.poses

    def set_visibility(self, person: int, keypoint: int | str, v: int) -> Poses:
        """Set COCO v of one keypoint; v = 0 (absent) also drops a click on it."""
        p, k = self._person(person), self._keypoint(keypoint)
        if v not in (0, 1, 2):
            raise ValueError(f"set_visibility: v={v}; COCO visibility is 0, 1 or 2")
        self._push()
        if k in p.clicks:
            if v == 0:
                del p.clicks[k]
            else:
                x, y, _ = p.clicks[k]
                p.clicks[k] = (x, y, v)
        p.visibility[k] = v
        self.poses = self.poses.copy()
        self.poses.visibility[person, k] = v
        return self.poses

    def confirm_person(self, person: int) -> Poses:
        """The annotator vouches for this person: score 1."""
        p = self._person(person)
        self._push()
        p.confirmed = True
        self.poses = self.poses.copy()
        self.poses.scores[person] = 1.0
        return self.poses

    def undo(self) -> Poses:
        """Back to the state before the last action (a no-op when there is none)."""
        if self._history:
            self._persons, self.poses = self._history.pop()
        return self.poses

    def refine(self, poses: Poses) -> Poses:
        """The keypoint decoder's answer when started from `poses` (pixels), nothing pinned.

        This is the question pose error modeling trains the decoder on: each person enters
        as a given person (its box, its keypoints as the starting pose) and comes out
        repaired. Only the cached encoder memory is read; the session's persons, clicks and
        history stay as they are. Scores are the given ones (the decoder rescores detected
        persons only)."""
        num_keypoints = self.schema.num_keypoints
        if poses.num_persons == 0:
            return Poses.empty(num_keypoints)
        if poses.num_keypoints != num_keypoints:
            raise ValueError(
                f"refine: poses have {poses.num_keypoints} keypoints per person; the model's "
                f"schema '{self.schema.name}' has {num_keypoints}")
        device = self._scale.device
        boxes = boxes_xyxy_to_normalized(poses.boxes, self.image_size).to(device)   # (P, 4)
        keypoints = (torch.as_tensor(poses.keypoints, dtype=torch.float32, device=device)
                     / self._scale).clamp(0.0, 1.0)                                  # (P, K, 2)
        with self._inference():
            humans = self.model.humans_from_boxes(boxes[None])
            out = self.model.decode_keypoints(self._state, humans, keypoints[None])
        persons = [_Person(content=humans.content[0, i], box=boxes[i],
                           start_keypoints=keypoints[i], source="given",
                           score=float(poses.scores[i])) for i in range(poses.num_persons)]
        return self._to_poses(out, persons)

    @property
    def can_undo(self) -> bool:
        return bool(self._history)

    @property
    def num_persons(self) -> int:
        return len(self._persons)

    def candidate(self, person: int) -> int | None:
        """The detection candidate the person is, or whose pose its drawn box started from
        (None: neither)."""
        return self._person(person).candidate

    def clicks(self, person: int) -> dict[int, tuple[float, float, int]]:
        """Clicked keypoints of a person: keypoint index -> (x, y, v)."""
        return dict(self._person(person).clicks)

    # ---- internals -------------------------------------------------------------------
    def _overlapping_candidate(self, box: Tensor) -> int | None:
        """The detection candidate that best overlaps `box` (cxcywh normalized), if its IoU
        reaches adopt_candidate_iou and the candidate is no person of the session already:
        its box is closer to `box` than to every person's box (a person adopted from
        another detector may be that candidate)."""
        if self.adopt_candidate_iou is None:
            return None
        if self._candidates is None:
            self._decode_candidates()
        candidates = box_cxcywh_to_xyxy(self._candidates.boxes)
        iou = box_iou(box_cxcywh_to_xyxy(box[None]), candidates)[0][0]
        if self._persons:
            persons = box_cxcywh_to_xyxy(torch.stack([p.box for p in self._persons]))
            # A detected person's box is its candidate's: IoU 1, always taken.
            taken = box_iou(persons, candidates)[0].amax(0) >= iou
            iou = iou.masked_fill(taken, -1.0)
        if len(iou) == 0 or float(iou.max()) < self.adopt_candidate_iou:
            return None
        return int(iou.argmax())

    def _decode_candidates(self) -> tuple[HumanState, dict]:
        """The human decoder's persons and their first decode; kept as the candidates."""
        humans = self.model.detect_humans(self._state)
        outputs = self.model.predict_keypoints(self._state, humans)
        self._candidates = _Candidates(outputs["start_boxes"][0], outputs["start_keypoints"][0])
        return humans, outputs

    def _decode(self) -> Poses:
        """Run the keypoint decoder for all persons with all clicks pinned."""
        num_keypoints = self.schema.num_keypoints
        if not self._persons:
            self.poses = Poses.empty(num_keypoints)
            return self.poses
        device = self._scale.device
        content = torch.stack([p.content for p in self._persons])[None]
        boxes = torch.stack([p.box for p in self._persons])[None]
        keypoints = torch.stack([p.start_keypoints for p in self._persons]).clone()
        pinned = torch.zeros(keypoints.shape[:2], dtype=torch.bool, device=device)
        for i, p in enumerate(self._persons):
            for k, (x, y, _) in p.clicks.items():
                keypoints[i, k] = (torch.tensor([x, y], device=device) / self._scale).clamp(0, 1)
                pinned[i, k] = True
        with self._inference():
            if self.click_prior is not None:
                keypoints = self._reseeded(keypoints, pinned)
            logits = torch.zeros(1, len(self._persons), 1, device=device)  # not read
            humans = HumanState(content, boxes, logits)
            out = self.model.decode_keypoints(self._state, humans, keypoints[None], pinned[None])
        self.poses = self._to_poses(out)
        if self.click_prior is not None:
            self._propagate_clicks()
        return self.poses

    def _reseeded(self, keypoints: Tensor, pinned: Tensor) -> Tensor:
        """Starting poses (P, K, 2) with the clicked persons' implausible keypoints started
        again from the heatmaps (clickpose.model.click_propagation.reseeded_starts)."""
        state = self._state
        if state.keypoint_heatmap is None:
            return keypoints
        clicked = [i for i, p in enumerate(self._persons) if p.clicks]
        if not clicked:
            return keypoints
        if self._evidence is None:
            self._evidence = heatmap_evidence(state.keypoint_heatmap[0], state.heatmap_mask[0])
        offsets = None if state.keypoint_offsets is None else state.keypoint_offsets[0]
        boxes = torch.stack([self._persons[i].box for i in clicked])
        keypoints[clicked] = reseeded_starts(self.click_prior, self._evidence, offsets,
                                             state.heatmap_mask[0], boxes, keypoints[clicked],
                                             pinned[clicked])
        return keypoints

    def _propagate_clicks(self) -> None:
        """Each clicked person's other keypoints moved by what its clicks say of their errors."""
        keypoints = self.poses.keypoints
        for i, p in enumerate(self._persons):
            if not p.clicks:
                continue
            start = (p.start_keypoints * self._scale).cpu()
            clicks = {k: (x, y) for k, (x, y, _) in p.clicks.items()}
            moved = propagated(self.click_prior, torch.from_numpy(keypoints[i]), start, clicks,
                               torch.from_numpy(self.poses.boxes[i]))
            keypoints[i] = moved.numpy()
            for k, (x, y) in clicks.items():  # exactly the click, whatever the arithmetic
                keypoints[i, k] = (x, y)

    def _to_poses(self, out: dict, persons: list[_Person] | None = None) -> Poses:
        """Decoder outputs (batch of one, persons in session order) -> Poses with the clicks,
        user-set visibilities and scores written in."""
        persons = self._persons if persons is None else persons
        h, w = self.image_size
        keypoints = (out["pred_keypoints"][0] * self._scale).double().cpu().numpy()
        keypoint_scores = out["pred_visibility"][0].sigmoid().double().cpu().numpy()
        visibility = visibility_from_scores(keypoint_scores)
        scale = torch.tensor([w, h, w, h], device=self._scale.device)
        boxes = (box_cxcywh_to_xyxy(out["pred_boxes"][0]) * scale).double().cpu().numpy()
        predicted = out["pred_scores"][0].double().cpu().numpy()
        scores = np.empty(len(persons))
        for i, p in enumerate(persons):
            for k, (x, y, v) in p.clicks.items():
                keypoints[i, k] = (x, y)  # exactly the click, not a float round trip
                keypoint_scores[i, k] = 1.0
                visibility[i, k] = v
            for k, v in p.visibility.items():
                visibility[i, k] = v
            if p.confirmed:
                scores[i] = 1.0
            elif p.source == "detected":
                scores[i] = predicted[i]
            else:
                scores[i] = p.score
        return Poses(keypoints, keypoint_scores, visibility, boxes, scores)

    def _push(self) -> None:
        self._history.append((copy.deepcopy(self._persons), self.poses.copy()))

    def _person(self, person: int) -> _Person:
        if not (isinstance(person, (int, np.integer)) and 0 <= person < len(self._persons)):
            raise IndexError(f"person {person} does not exist; this image has "
                             f"{len(self._persons)} persons (0..{len(self._persons) - 1})")
        return self._persons[person]

    def _keypoint(self, keypoint: int | str) -> int:
        if isinstance(keypoint, str):
            return self.schema.index(keypoint)
        k = int(keypoint)
        if not 0 <= k < self.schema.num_keypoints:
            raise IndexError(f"keypoint {keypoint} is outside 0..{self.schema.num_keypoints - 1} "
                             f"of schema '{self.schema.name}'")
        return k

    @contextlib.contextmanager
    def _inference(self):
        # Switching modes walks every module: do it only when needed (it costs ms per click).
        was_training = self.model.training
        if was_training:
            self.model.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            if was_training:
                self.model.train()

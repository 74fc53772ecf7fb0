"""A scene: background and clutter, then persons painted far to near, then their labels.

Occlusion comes from the painting itself. Each person has a part map (which of its parts
is on top at each pixel) and the scene keeps an owner map (which person is on top). A
keypoint inside the image is visible (v=2) when its pixel shows its own part of its own
person; otherwise it is occluded (v=1): by another person painted later, or by the person's
own nearer parts. Outside the image it is v=0 with x = y = 0, as COCO stores it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from clickpose.data.synthetic import styles
from clickpose.data.synthetic.render import (
    KEYPOINT_PARTS,
    PART_IDS,
    Look,
    close_torso_seam,
    draw_figure,
    figure_shapes,
    paint_stripes,
)
from clickpose.data.synthetic.skeleton import (
    POINT_NAMES,
    Body,
    Pose,
    View,
    build_figure,
    figure_extent,
    sample_body,
    sample_pose,
    sample_yaw,
)
from clickpose.keypoints import KeypointSchema
from clickpose.poses import Poses

# Person standing height as a fraction of the image side: from far away to close up.
MIN_HEIGHT, MAX_HEIGHT = 0.3, 1.1


@dataclass
class PersonSpec:
    """Everything that decides one person: proportions, pose, view, size, place, look."""
    body: Body
    pose: Pose
    yaw: float                      # degrees; 0 faces the camera, 180 shows the back
    height_px: float                # standing height in pixels
    foot_xy: tuple[float, float]    # pixel under the lowest point of the posed figure
    look: Look
    seat: tuple[int, int, int] | None = None   # colour of the chair under a sitting person


@dataclass
class SyntheticPerson:
    """One drawn person with its labels and the masks they were computed from."""
    keypoints: np.ndarray           # (K, 3) x, y, v (COCO; v=0 -> x = y = 0)
    bbox: tuple[int, int, int, int] # x, y, w, h: tight box of the person as drawn, in image
    area: int                       # pixels of the person still visible in the final image
    mask: np.ndarray = field(repr=False)        # (H, W) bool: visible pixels
    silhouette: np.ndarray = field(repr=False)  # (H, W) bool: all pixels it painted
    parts: np.ndarray = field(repr=False)       # (H, W) uint8: its part on top (PART_IDS)
    pose: str = ""
    yaw: float = 0.0

    @property
    def num_keypoints(self) -> int:
        return int((self.keypoints[:, 2] > 0).sum())

    def to_coco(self, annotation_id: int, image_id: int) -> dict:
        kp = [round(float(v), 2) for v in self.keypoints.reshape(-1)]
        kp[2::3] = [int(v) for v in kp[2::3]]
        return {
            "id": annotation_id, "image_id": image_id, "category_id": 1,
            "keypoints": kp, "num_keypoints": self.num_keypoints,
            "bbox": [int(v) for v in self.bbox], "area": int(self.area), "iscrowd": 0,
            "pose": self.pose, "yaw": round((float(self.yaw) + 180.0) % 360.0 - 180.0, 1),
        }


# ---- sampling ------------------------------------------------------------------------------
def sample_people(rng: np.random.Generator, style: str, size: int, max_persons: int,
                  horizon: float) -> list[PersonSpec]:
    """1..max_persons persons on a ground plane: lower feet = nearer = larger; some stand
    close to another (overlap), some are cut by the image border."""
    count = int(rng.integers(1, max_persons + 1))
    specs: list[PersonSpec] = []
    for _ in range(count):
        height = size * float(np.exp(rng.uniform(np.log(MIN_HEIGHT), np.log(MAX_HEIGHT))))
        foot_y = horizon + height * float(rng.uniform(0.7, 1.3))
        if specs and rng.random() < 0.35:      # next to someone: overlapping persons
            other = specs[int(rng.integers(len(specs)))]
            foot_x = other.foot_xy[0] + float(rng.uniform(-0.4, 0.4)) * height
        else:
            foot_x = float(rng.uniform(0.0, 1.0)) * size
        pose = sample_pose(rng)
        specs.append(PersonSpec(
            body=sample_body(rng), pose=pose, yaw=sample_yaw(rng),
            height_px=height, foot_xy=(foot_x, foot_y),
            look=styles.sample_look(rng, style, height),
            seat=styles.seat_colour(rng, style) if pose.name == "sitting" else None))
    return specs


# ---- drawing and labelling -----------------------------------------------------------------
def _allowed_ids(schema: KeypointSchema) -> list[tuple[int, ...]]:
    return [tuple(PART_IDS[p] for p in KEYPOINT_PARTS[n]) for n in schema.keypoints]


def _draw_seat(image: Image.Image, owner: np.ndarray, spec: PersonSpec,
               kp_px: dict[str, np.ndarray]) -> None:
    """A stool under a sitting person's thighs, from seat height to the floor. Drawn only
    where no person is yet, so it hides nobody and the labels stay exact."""
    hips = (kp_px["left_hip"] + kp_px["right_hip"]) / 2
    knees = (kp_px["left_knee"] + kp_px["right_knee"]) / 2
    thick = spec.height_px * spec.body.leg_thickness * 0.5
    x0, x1 = sorted((hips[0], knees[0]))
    x0, x1 = x0 - thick, x1 + thick
    top = max(hips[1], knees[1]) + thick * 0.8
    floor = spec.foot_xy[1]
    if floor - top < 2:
        return
    stool = Image.new("L", image.size, 0)
    d = ImageDraw.Draw(stool)
    d.rectangle([x0, top, x1, top + max(thick * 0.6, 1)], fill=255)
    leg = max(thick * 0.35, 1)
    for lx in (x0 + leg, x1 - 2 * leg):
        d.rectangle([lx, top, lx + leg, floor], fill=255)
    mask = np.asarray(stool) > 0
    mask &= owner == 0
    image.paste(Image.new("RGB", image.size, spec.seat), (0, 0),
                Image.fromarray(mask.astype(np.uint8) * 255))


def compose_scene(specs: list[PersonSpec], schema: KeypointSchema, background: Image.Image,
                  ) -> tuple[Image.Image, list[SyntheticPerson]]:
    """Paint the persons on `background` (far first, by foot height) and label them."""
    unknown = [n for n in schema.keypoints if n not in POINT_NAMES]
    if unknown:
        raise ValueError(f"schema '{schema.name}': synthetic people have no keypoints {unknown}; "
                         f"available: {', '.join(POINT_NAMES)}")
    image = background.copy()
    size_w, size_h = image.size
    draw = ImageDraw.Draw(image)
    owner = np.zeros((size_h, size_w), np.int16)           # index + 1 of the person on top
    order = sorted(range(len(specs)), key=lambda i: specs[i].foot_xy[1])
    drawn = []
    for rank, i in enumerate(order):
        spec = specs[i]
        fig = build_figure(spec.body, spec.pose)
        lowest, _ = figure_extent(fig)
        origin = (spec.foot_xy[0], spec.foot_xy[1] + spec.height_px * lowest)
        view = View(spec.yaw, spec.height_px, origin)
        names = list(POINT_NAMES)
        xy, _ = view.project(np.stack([fig.points[n] for n in names]))
        kp_px = dict(zip(names, xy))
        if spec.seat is not None:
            _draw_seat(image, owner, spec, kp_px)
        parts_img = Image.new("L", (size_w, size_h), 0)
        draw_figure(draw, ImageDraw.Draw(parts_img), figure_shapes(fig, view, spec.look),
                    kp_px, spec.look)
        parts = np.asarray(parts_img)
        paint_stripes(image, parts, spec.look)
        close_torso_seam(image, parts, spec.look)
        owner[parts > 0] = rank + 1
        drawn.append((spec, parts, np.stack([kp_px[n] for n in schema.keypoints])))

    allowed = _allowed_ids(schema)
    persons = []
    for rank, (spec, parts, xy) in enumerate(drawn):
        mask = owner == rank + 1
        area = int(mask.sum())
        if area == 0:                 # entirely hidden or outside: nothing to label
            continue
        silhouette = parts > 0
        ys, xs = np.nonzero(silhouette)
        bbox = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                int(ys.max() - ys.min() + 1))
        kps = np.zeros((len(xy), 3))
        for k, (x, y) in enumerate(xy):
            px, py = int(np.floor(x)), int(np.floor(y))
            if not (0 <= px < size_w and 0 <= py < size_h):
                continue              # v = 0, x = y = 0
            on_top = parts[py, px] in allowed[k] and owner[py, px] == rank + 1
            kps[k] = (x, y, 2 if on_top else 1)
        persons.append(SyntheticPerson(kps, bbox, area, mask, silhouette, parts,
                                       spec.pose.name, spec.yaw))
    return image, persons


def render_scene(rng: np.random.Generator, schema: KeypointSchema, style: str = "photo",
                 size: int = 256, max_persons: int = 4,
                 ) -> tuple[Image.Image, list[SyntheticPerson]]:
    """One random scene of 1..max_persons people: the image and each person's labels."""
    if style not in styles.STYLES:
        raise ValueError(f"unknown style '{style}'; choose one of {', '.join(styles.STYLES)}")
    if max_persons < 1:
        raise ValueError(f"max_persons is {max_persons}; give at least 1")
    horizon = float(rng.uniform(0.25, 0.55)) * size
    bg = styles.background(rng, style, size, horizon)
    specs = sample_people(rng, style, size, max_persons, horizon)
    image, persons = compose_scene(specs, schema, bg)
    return styles.finish(rng, style, image), persons


def persons_to_poses(persons: list[SyntheticPerson], num_keypoints: int) -> Poses:
    """The drawn persons as ground-truth Poses (score 1; keypoint score 1 where labelled)."""
    if not persons:
        return Poses.empty(num_keypoints)
    kps = np.stack([p.keypoints for p in persons])                      # (P, K, 3)
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (p.bbox for p in persons)],
                     dtype=np.float64)
    return Poses(keypoints=kps[..., :2].copy(), keypoint_scores=(kps[..., 2] > 0).astype(float),
                 visibility=kps[..., 2].astype(np.int64), boxes=boxes,
                 scores=np.ones(len(persons)))

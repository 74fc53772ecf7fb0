"""Drawing one figure: its body parts as pixel polygons, painted far-to-near.

Each part is drawn twice with the same polygon: in colour on the image and with its part id
on a per-person part map. The part map is what visibility is computed from, so a keypoint
is visible exactly when the part that carries it is what ends up on top at its pixel.
Pixel convention: a keypoint (x, y) lies in pixel (floor(x), floor(y)); PIL puts integer
coordinates at pixel centres, hence the half-pixel shift when drawing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from clickpose.data.synthetic.skeleton import Figure3D, View

Color = tuple[int, int, int]

# Part ids on the per-person part map (0 = not this person).
PART_IDS = {name: i + 1 for i, name in enumerate((
    "torso_left", "torso_right", "neck", "head", "hair", "left_ear", "right_ear",
    "left_eye", "right_eye", "nose",
    "left_upper_arm", "right_upper_arm", "left_forearm", "right_forearm",
    "left_hand", "right_hand", "left_thigh", "right_thigh", "left_shin", "right_shin",
    "left_foot", "right_foot",
))}

# A keypoint counts as visible when the part on top at its pixel is one of these.
KEYPOINT_PARTS: dict[str, tuple[str, ...]] = {
    "nose": ("nose", "left_eye", "right_eye"),
    "left_eye": ("left_eye", "nose"), "right_eye": ("right_eye", "nose"),
    "left_ear": ("left_ear",), "right_ear": ("right_ear",),
    "head_top": ("head", "hair"),
}
for _s in ("left", "right"):
    KEYPOINT_PARTS.update({
        f"{_s}_shoulder": (f"torso_{_s}", f"{_s}_upper_arm"),
        f"{_s}_elbow": (f"{_s}_upper_arm", f"{_s}_forearm"),
        f"{_s}_wrist": (f"{_s}_forearm", f"{_s}_hand"),
        f"{_s}_hand_tip": (f"{_s}_hand",),
        f"{_s}_hip": (f"torso_{_s}", f"{_s}_thigh"),
        f"{_s}_knee": (f"{_s}_thigh", f"{_s}_shin"),
        f"{_s}_ankle": (f"{_s}_shin", f"{_s}_foot"),
        f"{_s}_toe": (f"{_s}_foot",),
    })
# The part that draws the keypoint's own pixel (so that tiny parts still cover it).
OWNER_PART = {name: parts[0] for name, parts in KEYPOINT_PARTS.items()}


@dataclass
class Look:
    """How one person is drawn: colours and shape choices (set by the style)."""
    skin: Color
    hair: Color
    shirt: Color
    upper_arms: Color       # shirt colour, or skin when sleeveless
    forearms: Color         # shirt colour for long sleeves, skin for short ones
    pants: Color
    shins: Color            # pants colour for trousers, skin for shorts
    shoes: Color
    eyes: Color = (30, 30, 30)
    outline: Color | None = None
    outline_width: int = 0
    boxy: bool = False      # box head and square-ended limbs
    taper: float = 0.75     # limb end radius / start radius
    shade: float = 0.0      # highlight strength (0 flat)
    light: tuple[float, float] = (-0.6, -0.8)  # direction the light comes from (image x, y)
    stripes: Color | None = None
    stripe_period: float = 0.0
    stripe_angle: float = 0.0


@dataclass
class Shape:
    part: str
    polygon: np.ndarray                 # (N, 2) pixels
    depth: float
    fill: Color
    order: int = 0                      # tie-break within equal depth (later on top)
    keypoints: list[str] = field(default_factory=list)  # keypoints this shape owns
    highlight: np.ndarray | None = None # (M, 2) lighter inner polygon, photo shading


# ---- polygon builders ----------------------------------------------------------------------
_ARC = np.linspace(0, np.pi, 7)
_COS, _SIN = np.cos(_ARC)[:, None], np.sin(_ARC)[:, None]   # (7, 1) half-circle


def capsule(p0: np.ndarray, p1: np.ndarray, r0: float, r1: float, boxy: bool = False):
    """Thick segment p0 -> p1 with radii r0, r1: round or square ends. (N, 2) pixels."""
    d = p1 - p0
    length = float(np.hypot(d[0], d[1]))
    u = d / length if length > 1e-6 else np.array([0.0, 1.0])
    n = np.array([-u[1], u[0]])
    if boxy:
        a, b = p0 - u * r0, p1 + u * r1
        return np.array([a + n * r0, b + n * r1, b - n * r1, a - n * r0])
    end = p1 + r1 * (n * _COS + u * _SIN)
    start = p0 - r0 * (n * _COS + u * _SIN)
    return np.concatenate([end, start])


def ellipsoid_outline(view: View, centre: np.ndarray, frame: np.ndarray,
                      radii: tuple[float, float, float], n: int = 20,
                      boxy: bool = False) -> np.ndarray:
    """Silhouette (N, 2) in pixels of an ellipsoid (semi-axes `radii` along `frame`'s
    columns) under the orthographic view; boxy gives a superellipse (rounded box)."""
    a = (view.rotation @ frame @ np.diag(radii))[:2]          # (2, 3)
    shape = np.linalg.cholesky(a @ a.T + 1e-12 * np.eye(2))   # outline = shape @ unit circle
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    if boxy:
        c, s = np.sign(c) * np.abs(c) ** 0.4, np.sign(s) * np.abs(s) ** 0.4
    off = (shape @ np.stack([c, s])).T                         # (n, 2) world units
    ctr, _ = view.project_one(centre)
    return np.stack([ctr[0] + view.scale * off[:, 0], ctr[1] - view.scale * off[:, 1]], 1)


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Monotone-chain convex hull of (N, 2) points, counter-clockwise."""
    pts = sorted(map(tuple, points))
    if len(pts) < 3:
        return np.array(pts)

    def half(seq):
        out: list = []
        for p in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(reversed(pts))
    return np.array(lower[:-1] + upper[:-1])


def _shrink(poly: np.ndarray, factor: float, shift: np.ndarray) -> np.ndarray:
    centre = poly.mean(axis=0)
    return centre + (poly - centre) * factor + shift


def _lighter(c: Color, amount: float) -> Color:
    return tuple(int(min(255, v + (255 - v) * amount)) for v in c)


def _darker(c: Color, amount: float) -> Color:
    return tuple(int(v * (1 - amount)) for v in c)


# ---- the figure's parts --------------------------------------------------------------------
def figure_shapes(fig: Figure3D, view: View, look: Look) -> list[Shape]:
    """All parts of a figure as pixel polygons, sorted far to near (draw order)."""
    body, pts = fig.body, fig.points
    s = view.scale
    px = {k: view.project_one(v) for k, v in pts.items()}     # name -> ((2,), depth)
    shapes: list[Shape] = []
    light = np.asarray(look.light)

    def limb(part: str, a: str | np.ndarray, b: str | np.ndarray, r0: float, r1: float,
             fill: Color, owns: list[str], order: int = 2) -> None:
        pa, da = px[a] if isinstance(a, str) else view.project_one(a)
        pb, db = px[b] if isinstance(b, str) else view.project_one(b)
        r0, r1 = max(r0 * s, 0.8), max(r1 * s, 0.7)
        hl = None
        if look.shade > 0:
            hl = capsule(pa + light * r0 * 0.35, pb + light * r1 * 0.35, r0 * 0.45, r1 * 0.45)
        shapes.append(Shape(part, capsule(pa, pb, r0, r1, look.boxy), (da + db) / 2, fill,
                            order, owns, hl))

    # Torso: two halves of a body with depth, each the hull of half-ellipse cross sections
    # at shoulder and hip level; the near half covers the far one in side views.
    theta = np.linspace(-np.pi / 2, np.pi / 2, 7)
    for side, sgn in (("left", 1.0), ("right", -1.0)):
        ring = []
        for centre, frame, half_w, half_d, dy in (
            (fig.extras["shoulder_mid"], fig.trunk_frame, body.shoulder_width * 0.45,
             body.chest_depth * 0.5, -body.arm_thickness * 0.3),
            (fig.extras["pelvis"], np.eye(3), body.hip_width * 0.52,
             body.chest_depth * 0.55, -body.leg_thickness * 0.35),
        ):
            local = np.stack([sgn * half_w * np.cos(theta), np.full_like(theta, dy),
                              half_d * np.sin(theta)], 1)
            ring.append(centre + local @ frame.T)
        ring = np.concatenate(ring)
        xy, depth = view.project(ring)
        poly = convex_hull(xy)
        fill = look.shirt
        hl = _shrink(poly, 0.55, light * s * 0.02) if look.shade > 0 else None
        shapes.append(Shape(f"torso_{side}", poly, float(depth.mean()), fill, 1,
                            [f"{side}_shoulder", f"{side}_hip"], hl))

    limb("neck", fig.extras["neck_base"], fig.extras["chin"], body.head * 0.22,
         body.head * 0.2, look.skin, [], 0)

    for side in ("left", "right"):
        at, lt = body.arm_thickness / 2, body.leg_thickness / 2
        limb(f"{side}_upper_arm", f"{side}_shoulder", f"{side}_elbow", at, at * look.taper,
             look.upper_arms, [f"{side}_elbow"])
        limb(f"{side}_forearm", f"{side}_elbow", f"{side}_wrist", at * look.taper,
             at * look.taper ** 2, look.forearms, [f"{side}_wrist"], 3)
        limb(f"{side}_hand", f"{side}_wrist", f"{side}_hand_tip", at * 0.7, at * 0.55,
             look.skin, [f"{side}_hand_tip"], 4)
        limb(f"{side}_thigh", f"{side}_hip", f"{side}_knee", lt, lt * look.taper,
             look.pants, [f"{side}_knee"])
        limb(f"{side}_shin", f"{side}_knee", f"{side}_ankle", lt * look.taper,
             lt * look.taper ** 2, look.shins, [f"{side}_ankle"], 3)
        limb(f"{side}_foot", fig.extras[f"{side}_heel"], f"{side}_toe", lt * 0.45,
             lt * 0.35, look.shoes, [f"{side}_toe"], 4)

    shapes.extend(_head_shapes(fig, view, look))
    shapes.sort(key=lambda sh: (round(sh.depth, 4), sh.order))
    return shapes


def _head_shapes(fig: Figure3D, view: View, look: Look) -> list[Shape]:
    """Head, hair, ears, eyes and nose as one group at the head's depth, in their own
    far-to-near order: a feature turned away from the camera is drawn before the head (a
    far ear hides behind it) or not at all (eyes, nose), so the head covers its keypoint."""
    rx, ry, rz = fig.head_radii
    frame, centre = fig.head_frame, fig.head_centre
    _, head_depth = view.project_one(centre)
    to_camera = view.rotation @ frame                    # head axes in camera coordinates
    group: list[tuple[float, Shape]] = []

    def facing(normal: tuple[float, float, float]) -> float:
        n = np.asarray(normal, dtype=float)
        return float((to_camera @ (n / np.linalg.norm(n)))[2])

    head = ellipsoid_outline(view, centre, frame, (rx, ry, rz), 22, look.boxy)
    hl = _shrink(head, 0.5, np.asarray(look.light) * view.scale * rx * 0.3) \
        if look.shade > 0 else None
    head_shape = Shape("head", head, 0, look.skin, 0, ["head_top"], hl)
    group.append((0.0, head_shape))
    hair_centre = centre + frame @ np.array([0.0, 0.25 * ry, -0.3 * rz])
    hair = ellipsoid_outline(view, hair_centre, frame, (rx * 1.06, ry * 0.8, rz * 0.95), 22,
                             look.boxy)
    hair_side = facing((0.0, 0.3, -1.0))
    group.append((-1.0 if hair_side <= 0 else 1.0, Shape("hair", hair, 0, look.hair)))
    for side, sgn in (("left", 1.0), ("right", -1.0)):
        ear = fig.points[f"{side}_ear"]
        poly = ellipsoid_outline(view, ear, frame, (rx * 0.14, ry * 0.25, rz * 0.2), 10)
        group.append((-2.0 if facing((sgn, 0.0, -0.05)) < -0.25 else 1.5,
                      Shape(f"{side}_ear", poly, 0, look.skin, 0, [f"{side}_ear"])))
        if facing((sgn * 0.38, 0.1, 0.82)) > 0.0:
            r = rx * (0.22 if look.boxy else 0.15)
            eye = fig.points[f"{side}_eye"]
            poly = ellipsoid_outline(view, eye, frame, (r, r, r * 0.3), 10)
            group.append((2.0, Shape(f"{side}_eye", poly, 0, look.eyes, 0, [f"{side}_eye"])))
        else:   # turned away: its point lies on the head, under the head's colour
            head_shape.keypoints.append(f"{side}_eye")
    if facing((0.0, 0.0, 1.0)) > -0.15:
        poly = ellipsoid_outline(view, fig.points["nose"], frame,
                                 (rx * 0.16, ry * 0.13, rz * 0.14), 10)
        group.append((3.0, Shape("nose", poly, 0, _darker(look.skin, 0.18), 0, ["nose"])))
    else:
        head_shape.keypoints.append("nose")
    group.sort(key=lambda t: t[0])
    shapes = []
    for i, (_, sh) in enumerate(group):
        sh.depth, sh.order = head_depth, 10 + i
        shapes.append(sh)
    return shapes


# ---- painting ------------------------------------------------------------------------------
def _pil(poly: np.ndarray) -> list[float]:
    return (poly - 0.5).ravel().tolist()


def draw_figure(image_draw: ImageDraw.ImageDraw, parts_draw: ImageDraw.ImageDraw,
                shapes: list[Shape], keypoints_px: dict[str, np.ndarray], look: Look) -> None:
    """Paint the shapes in order on the image and, with part ids, on the part map."""
    width = look.outline_width if look.outline is not None else 0
    for sh in shapes:
        poly = _pil(sh.polygon)
        if len(poly) < 6:
            continue
        pid = PART_IDS[sh.part]
        if width:
            image_draw.polygon(poly, fill=sh.fill, outline=look.outline, width=width)
            parts_draw.polygon(poly, fill=pid, outline=pid, width=width)
        else:
            image_draw.polygon(poly, fill=sh.fill)
            parts_draw.polygon(poly, fill=pid)
        if sh.highlight is not None:
            image_draw.polygon(_pil(sh.highlight), fill=_lighter(sh.fill, look.shade))
        for name in sh.keypoints:   # tiny parts still cover their own keypoint's pixel
            x, y = keypoints_px[name]
            if np.isfinite(x) and np.isfinite(y):
                pixel = (int(np.floor(x)), int(np.floor(y)))
                image_draw.point(pixel, fill=sh.fill)
                parts_draw.point(pixel, fill=pid)


SHIRT_PARTS = ("torso_left", "torso_right")


def paint_stripes(image: Image.Image, parts: np.ndarray, look: Look) -> None:
    """Striped shirt: stripes pasted where the person's torso ended up on top.
    parts: (H, W) uint8 part map of this person."""
    if look.stripes is None or look.stripe_period < 2:
        return
    ids = [PART_IDS[p] for p in SHIRT_PARTS]
    mask = (parts == ids[0]) | (parts == ids[1])
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    t = np.radians(look.stripe_angle)
    phase = (xx * np.cos(t) + yy * np.sin(t)) / look.stripe_period
    stripe = (phase - np.floor(phase)) < 0.4
    sel = mask[y0:y1, x0:x1] & stripe
    crop = np.asarray(image.crop((x0, y0, x1, y1))).copy()
    crop[sel] = look.stripes
    image.paste(Image.fromarray(crop), (int(x0), int(y0)))


def close_torso_seam(image: Image.Image, parts: np.ndarray, look: Look) -> None:
    """Outlined looks: the torso is two halves, each outlined; repaint the inner seam so
    only the torso's outer outline stays. parts: (H, W) uint8 part map of this person."""
    if look.outline is None or look.outline_width < 1:
        return
    ids = [PART_IDS[p] for p in SHIRT_PARTS]
    torso = (parts == ids[0]) | (parts == ids[1])
    ys, xs = np.nonzero(torso)
    if len(xs) == 0:
        return
    pad = look.outline_width + 1   # room around the torso so the filter sees its edges
    x0, y0 = max(int(xs.min()) - pad, 0), max(int(ys.min()) - pad, 0)
    x1, y1 = int(xs.max()) + 1 + pad, int(ys.max()) + 1 + pad
    x1, y1 = min(x1, torso.shape[1]), min(y1, torso.shape[0])
    crop_mask = Image.fromarray(torso[y0:y1, x0:x1].astype(np.uint8) * 255)
    inner = np.asarray(crop_mask.filter(ImageFilter.MinFilter(2 * look.outline_width + 1))) > 0
    crop = np.asarray(image.crop((x0, y0, x1, y1))).copy()
    crop[inner] = look.shirt
    image.paste(Image.fromarray(crop), (int(x0), int(y0)))

"""Articulated figure geometry: body proportions, joint angles, poses and the view.

A figure lives in its own body frame (units of standing height; x = the person's left,
y = up, z = the person's forward, pelvis at the origin) and is seen by an orthographic
camera after a yaw about the vertical axis. Left and right therefore always belong to the
person: a figure facing the camera (yaw 0) has its left shoulder on the image right, seen
from the back (yaw 180) on the image left.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Segment lengths as fractions of standing height (Drillis & Contini anthropometry).
UPPER_ARM, FOREARM, HAND = 0.186, 0.146, 0.108
THIGH, SHIN, FOOT = 0.245, 0.246, 0.152
SHOULDER_WIDTH, HIP_WIDTH = 0.259, 0.191
TRUNK, NECK, HEAD = 0.288, 0.052, 0.130   # hip->shoulder, shoulder->chin, chin->crown

POSES = ("standing", "walking", "running", "arms_raised", "sitting", "crouching")
POSE_WEIGHTS = (0.25, 0.22, 0.1, 0.18, 0.13, 0.12)
# Yaw centres of the views (degrees) and how often they occur: mostly facing the camera.
VIEWS = {"front": 0.0, "back": 180.0, "right_side": 90.0, "left_side": -90.0}
VIEW_WEIGHTS = (0.45, 0.2, 0.175, 0.175)

# Every point the geometry knows: COCO-17 plus the extra keypoints.
POINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
    "head_top", "left_hand_tip", "right_hand_tip", "left_toe", "right_toe",
)


@dataclass(frozen=True)
class Body:
    """Per-person proportions (fractions of height) and limb thicknesses (diameters)."""
    upper_arm: float = UPPER_ARM
    forearm: float = FOREARM
    hand: float = HAND
    thigh: float = THIGH
    shin: float = SHIN
    foot: float = FOOT
    shoulder_width: float = SHOULDER_WIDTH
    hip_width: float = HIP_WIDTH
    trunk: float = TRUNK
    neck: float = NECK
    head: float = HEAD
    chest_depth: float = 0.12
    arm_thickness: float = 0.055
    leg_thickness: float = 0.085


def sample_body(rng: np.random.Generator) -> Body:
    """Proportions with per-person variation (about 5% per segment, build and head size)."""
    def vary(value: float, spread: float = 0.05) -> float:
        return float(value * np.exp(rng.normal(0.0, spread)))

    build = float(np.exp(rng.normal(0.0, 0.12)))  # slim .. broad
    return Body(
        upper_arm=vary(UPPER_ARM), forearm=vary(FOREARM), hand=vary(HAND, 0.04),
        thigh=vary(THIGH), shin=vary(SHIN), foot=vary(FOOT, 0.04),
        shoulder_width=vary(SHOULDER_WIDTH * build, 0.04), hip_width=vary(HIP_WIDTH * build, 0.06),
        trunk=vary(TRUNK, 0.04), neck=vary(NECK, 0.1), head=vary(HEAD, 0.06),
        chest_depth=vary(0.12 * build, 0.06),
        arm_thickness=vary(0.055 * build, 0.08), leg_thickness=vary(0.085 * build, 0.08),
    )


@dataclass(frozen=True)
class Pose:
    """Joint angles in degrees. Flexion moves a limb forward, abduction outward (sideways)."""
    name: str = "standing"
    shoulder_flex: tuple[float, float] = (0.0, 0.0)    # (left, right)
    shoulder_abd: tuple[float, float] = (10.0, 10.0)
    elbow_flex: tuple[float, float] = (10.0, 10.0)
    hip_flex: tuple[float, float] = (0.0, 0.0)
    hip_abd: tuple[float, float] = (3.0, 3.0)
    knee_flex: tuple[float, float] = (3.0, 3.0)
    foot_out: tuple[float, float] = (15.0, 15.0)       # toes turned outward
    trunk_lean: float = 0.0                            # forward bend
    trunk_side: float = 0.0                            # sideways bend, toward the left is +
    head_yaw: float = 0.0                              # head turned to its left is +
    head_pitch: float = 0.0                            # nod down is +


def _pair(rng: np.random.Generator, low: float, high: float) -> tuple[float, float]:
    a, b = rng.uniform(low, high, size=2)
    return float(a), float(b)


def sample_pose(rng: np.random.Generator, name: str | None = None) -> Pose:
    """A pose of one of POSES with joint angles drawn within plausible ranges."""
    if name is None:
        name = str(rng.choice(POSES, p=POSE_WEIGHTS))
    common = {
        "name": name,
        "foot_out": _pair(rng, 0, 30),
        "trunk_side": float(rng.normal(0, 3)),
        "head_yaw": float(rng.normal(0, 15)),
        "head_pitch": float(rng.normal(0, 8)),
    }
    if name == "standing":
        return Pose(shoulder_flex=_pair(rng, -15, 25), shoulder_abd=_pair(rng, 4, 30),
                    elbow_flex=_pair(rng, 0, 60), hip_flex=_pair(rng, -5, 8),
                    hip_abd=_pair(rng, 0, 10), knee_flex=_pair(rng, 0, 12),
                    trunk_lean=float(rng.normal(0, 4)), **common)
    if name in ("walking", "running"):
        run = name == "running"
        swing = float(rng.uniform(-1, 1))                     # gait phase
        arm, leg = (rng.uniform(30, 60), rng.uniform(30, 50)) if run else \
            (rng.uniform(12, 35), rng.uniform(15, 30))
        elbow = (80, 110) if run else (5, 35)
        knees = (float(rng.uniform(15, 60) if swing < 0 else rng.uniform(5, 15)),
                 float(rng.uniform(15, 60) if swing > 0 else rng.uniform(5, 15)))
        if run:
            knees = (knees[0] + 30, knees[1] + 30)
        return Pose(shoulder_flex=(arm * swing, -arm * swing), shoulder_abd=_pair(rng, 5, 15),
                    elbow_flex=_pair(rng, *elbow), hip_flex=(-leg * swing, leg * swing),
                    hip_abd=_pair(rng, 0, 6), knee_flex=knees,
                    trunk_lean=float(rng.uniform(8, 20) if run else rng.uniform(0, 8)), **common)
    if name == "arms_raised":
        both = rng.random() < 0.6
        raised = (True, True) if both else ((True, False) if rng.random() < 0.5 else (False, True))
        flex, abd, elbow = [], [], []
        for up in raised:
            if up:
                sideways = rng.random() < 0.5
                angle = float(rng.uniform(100, 175))
                flex.append(float(rng.uniform(0, 30)) if sideways else angle)
                abd.append(angle if sideways else float(rng.uniform(5, 30)))
                elbow.append(float(rng.uniform(0, 70)))
            else:
                flex.append(float(rng.uniform(-10, 20)))
                abd.append(float(rng.uniform(5, 20)))
                elbow.append(float(rng.uniform(0, 40)))
        return Pose(shoulder_flex=tuple(flex), shoulder_abd=tuple(abd), elbow_flex=tuple(elbow),
                    hip_flex=_pair(rng, -5, 10), hip_abd=_pair(rng, 0, 15),
                    knee_flex=_pair(rng, 0, 12), trunk_lean=float(rng.normal(0, 4)), **common)
    if name == "sitting":
        hip = float(rng.uniform(75, 100))
        return Pose(shoulder_flex=_pair(rng, 10, 45), shoulder_abd=_pair(rng, 5, 20),
                    elbow_flex=_pair(rng, 40, 90), hip_flex=(hip + rng.normal(0, 5),
                                                             hip + rng.normal(0, 5)),
                    hip_abd=_pair(rng, 5, 20), knee_flex=_pair(rng, 70, 105),
                    trunk_lean=float(rng.uniform(-10, 15)), **common)
    if name == "crouching":
        return Pose(shoulder_flex=_pair(rng, 20, 70), shoulder_abd=_pair(rng, 5, 25),
                    elbow_flex=_pair(rng, 20, 90), hip_flex=_pair(rng, 95, 125),
                    hip_abd=_pair(rng, 10, 25), knee_flex=_pair(rng, 110, 140),
                    trunk_lean=float(rng.uniform(25, 45)), **common)
    raise ValueError(f"unknown pose '{name}'; known: {', '.join(POSES)}")


def sample_yaw(rng: np.random.Generator) -> float:
    """View yaw in degrees: front, back or side, with some spread between them."""
    centre = float(rng.choice(list(VIEWS.values()), p=VIEW_WEIGHTS))
    return centre + float(rng.normal(0, 18))


# ---- 3D geometry in the body frame ---------------------------------------------------------
def _limb_direction(flex_deg: float, abd_deg: float, side: float) -> np.ndarray:
    """Unit vector of a limb hanging down, swung out by abduction, then forward by flexion."""
    f, a = np.radians(flex_deg), np.radians(abd_deg)
    x, y = side * np.sin(a), -np.cos(a)
    return np.array([x, y * np.cos(f), -y * np.sin(f)])


def _rot_x(deg: float) -> np.ndarray:
    """Rotation that tips +y (up) toward +z (forward) by `deg`."""
    t = np.radians(deg)
    return np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])


def _rot_y(deg: float) -> np.ndarray:
    """Rotation about the vertical axis that turns +z (forward) toward +x (left)."""
    t = np.radians(deg)
    return np.array([[np.cos(t), 0, np.sin(t)], [0, 1, 0], [-np.sin(t), 0, np.cos(t)]])


def _rot_z(deg: float) -> np.ndarray:
    """Rotation that tips +y (up) toward +x (left) by `deg`."""
    t = np.radians(deg)
    return np.array([[np.cos(t), np.sin(t), 0], [-np.sin(t), np.cos(t), 0], [0, 0, 1]])


@dataclass
class Figure3D:
    """Joint positions (3,) in the body frame plus the frames needed to draw the shapes."""
    body: Body
    pose: Pose
    points: dict[str, np.ndarray] = field(default_factory=dict)
    trunk_frame: np.ndarray = field(default_factory=lambda: np.eye(3))  # columns: x, y, z axes
    head_frame: np.ndarray = field(default_factory=lambda: np.eye(3))
    head_centre: np.ndarray = field(default_factory=lambda: np.zeros(3))
    head_radii: tuple[float, float, float] = (0.05, 0.065, 0.055)       # x, y, z semi-axes
    extras: dict[str, np.ndarray] = field(default_factory=dict)        # non-keypoint anchors


def build_figure(body: Body, pose: Pose) -> Figure3D:
    """Forward kinematics: joint angles -> 3D points of every keypoint and drawing anchor."""
    fig = Figure3D(body=body, pose=pose)
    p = fig.points
    trunk = _rot_z(pose.trunk_side) @ _rot_x(pose.trunk_lean)
    fig.trunk_frame = trunk
    up, left = trunk[:, 1], trunk[:, 0]
    pelvis = np.zeros(3)
    shoulder_mid = pelvis + up * body.trunk
    fig.extras["pelvis"], fig.extras["shoulder_mid"] = pelvis, shoulder_mid

    for side, s in (("left", 1.0), ("right", -1.0)):
        i = 0 if side == "left" else 1
        shoulder = shoulder_mid + left * s * body.shoulder_width * 0.39
        arm = trunk @ _limb_direction(pose.shoulder_flex[i], pose.shoulder_abd[i], s)
        fore = trunk @ _limb_direction(pose.shoulder_flex[i] + pose.elbow_flex[i],
                                       pose.shoulder_abd[i], s)
        elbow = shoulder + arm * body.upper_arm
        wrist = elbow + fore * body.forearm
        p[f"{side}_shoulder"], p[f"{side}_elbow"], p[f"{side}_wrist"] = shoulder, elbow, wrist
        p[f"{side}_hand_tip"] = wrist + fore * body.hand

        hip = pelvis + np.array([s * body.hip_width * 0.3, 0.0, 0.0])
        thigh = _limb_direction(pose.hip_flex[i], pose.hip_abd[i], s)
        shin = _limb_direction(pose.hip_flex[i] - pose.knee_flex[i], pose.hip_abd[i] * 0.5, s)
        knee = hip + thigh * body.thigh
        ankle = knee + shin * body.shin
        toes = np.radians(pose.foot_out[i])
        foot = np.array([s * np.sin(toes), -0.12, np.cos(toes)])
        foot /= np.linalg.norm(foot)
        p[f"{side}_hip"], p[f"{side}_knee"], p[f"{side}_ankle"] = hip, knee, ankle
        p[f"{side}_toe"] = ankle + foot * body.foot * 0.78
        fig.extras[f"{side}_heel"] = ankle - foot * body.foot * 0.2 + np.array([0, -0.02, 0])

    head_frame = trunk @ _rot_y(pose.head_yaw) @ _rot_x(-pose.head_pitch)
    fig.head_frame = head_frame
    chin = shoulder_mid + up * body.neck
    rx, ry, rz = body.head * 0.37, body.head * 0.5, body.head * 0.45
    fig.head_radii = (rx, ry, rz)
    centre = chin + head_frame[:, 1] * ry
    fig.head_centre = centre
    fig.extras["neck_base"], fig.extras["chin"] = shoulder_mid, chin

    def on_head(x: float, y: float, z: float) -> np.ndarray:
        return centre + head_frame @ np.array([x * rx, y * ry, z * rz])

    p["nose"] = on_head(0.0, -0.12, 0.95)
    p["left_eye"], p["right_eye"] = on_head(0.38, 0.12, 0.82), on_head(-0.38, 0.12, 0.82)
    p["left_ear"], p["right_ear"] = on_head(1.0, 0.02, -0.05), on_head(-1.0, 0.02, -0.05)
    p["head_top"] = on_head(0.0, 0.96, -0.05)
    return fig


# ---- view ----------------------------------------------------------------------------------
@dataclass
class View:
    """Orthographic camera: yaw (degrees) about the vertical axis, pixels per height unit,
    and the pixel position of the pelvis."""
    yaw: float
    scale: float
    origin: tuple[float, float]

    def __post_init__(self) -> None:
        self.rotation = _rot_y(self.yaw)
        # body frame -> (pixel x, pixel y, depth): rotate, scale, flip y
        self._to_pixels = self.rotation * np.array([[self.scale], [-self.scale], [1.0]])
        self._offset = np.array([self.origin[0], self.origin[1], 0.0])

    def project(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) body-frame points -> (N, 2) pixels (x right, y down) and (N,) depth
        (larger is nearer the camera)."""
        out = pts @ self._to_pixels.T + self._offset
        return out[:, :2], out[:, 2]

    def project_one(self, pt: np.ndarray) -> tuple[np.ndarray, float]:
        out = self._to_pixels @ pt + self._offset
        return out[:2], float(out[2])


def figure_extent(fig: Figure3D) -> tuple[float, float]:
    """Lowest and highest y (height units) of the posed figure: soles and crown."""
    ys = [v[1] for v in fig.points.values()] + [fig.extras["left_heel"][1],
                                                 fig.extras["right_heel"][1]]
    return min(ys) - fig.body.leg_thickness * 0.25, fig.points["head_top"][1]

"""Synthetic people: procedurally drawn multi-person scenes with exact keypoints.

Articulated figures (skeleton) are drawn part by part (render) into scenes with clutter,
overlap and border truncation (scene) in a `photo` or an out-of-domain `art` look (styles),
and written as a COCO person_keypoints dataset folder (writer).
"""
from clickpose.data.synthetic.scene import (
    PersonSpec,
    SyntheticPerson,
    compose_scene,
    persons_to_poses,
    render_scene,
    sample_people,
)
from clickpose.data.synthetic.styles import STYLES
from clickpose.data.synthetic.writer import GENERATOR_VERSION, generate_dataset, image_rng

__all__ = [
    "GENERATOR_VERSION", "STYLES", "PersonSpec", "SyntheticPerson", "compose_scene",
    "generate_dataset", "image_rng", "persons_to_poses", "render_scene", "sample_people",
]

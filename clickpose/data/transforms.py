"""Transforms on (PIL image, target) pairs that keep boxes and keypoints with the pixels.

Target (a dict; coordinates in pixels of the current image):
    boxes (N, 4) float xyxy, keypoints (N, K, 3) float (x, y, v), area (N,),
    annotation_ids (N,), crowd_boxes (M, 4), image_id int, orig_size (2,) h, w of the stored
    image, size (2,) h, w now.
Pixel convention: continuous coordinates, the image spans [0, W] x [0, H] (as COCO's boxes),
so a horizontal flip maps x to W - x and a resize by s maps x to s * x exactly. A keypoint
with v=0 always carries x = y = 0.

Random transforms draw from the `generator` passed at call time (a torch.Generator; a numpy
Generator is turned into one), or from torch's global RNG when none is given, which the
DataLoader seeds per worker.
"""
from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.functional as F
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Per-person fields that a crop filters together.
PERSON_FIELDS = ("boxes", "keypoints", "area", "annotation_ids")


def as_torch_generator(generator) -> torch.Generator | None:
    """None, a torch.Generator, or a numpy Generator (drawn once to seed a torch one)."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, np.random.Generator):
        return torch.Generator().manual_seed(int(generator.integers(0, 2**63 - 1)))
    raise TypeError("generator must be a torch.Generator or numpy Generator, "
                    f"got {type(generator).__name__}")


def _uniform(generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(generator, low: int, high: int) -> int:
    """An integer in [low, high] (both included)."""
    return int(torch.randint(low, high + 1, (), generator=generator))


# ---- geometry on (image, target) -----------------------------------------------------------
def hflip(image: Image.Image, target: dict, flip_permutation: list[int]):
    """Mirror the image; x -> W - x, and left/right keypoints trade places."""
    width = image.width
    image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    target = dict(target)
    target["boxes"] = _flip_boxes(target["boxes"], width)
    target["crowd_boxes"] = _flip_boxes(target["crowd_boxes"], width)
    kps = target["keypoints"].clone()  # (N, K, 3)
    labelled = kps[..., 2] > 0
    kps[..., 0] = torch.where(labelled, width - kps[..., 0], kps[..., 0])
    flipped = torch.empty_like(kps)
    flipped[:, flip_permutation] = kps  # keypoint i becomes keypoint perm[i]
    target["keypoints"] = flipped
    # Marks the mirrored input (the backbone feature cache keys on it); twice is no flip.
    if target.pop("flipped", False) is False:
        target["flipped"] = True
    return image, target


def _flip_boxes(boxes: torch.Tensor, width: int) -> torch.Tensor:
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)


def resize(image: Image.Image, target: dict, size_hw: tuple[int, int]):
    """Resize to exactly (h, w); coordinates scale by w'/w and h'/h."""
    height, width = size_hw
    sx, sy = width / image.width, height / image.height
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    target = dict(target)
    scale = torch.tensor([sx, sy, sx, sy], dtype=torch.float32)
    target["boxes"] = target["boxes"] * scale
    target["crowd_boxes"] = target["crowd_boxes"] * scale
    kps = target["keypoints"].clone()
    kps[..., 0] *= sx
    kps[..., 1] *= sy
    target["keypoints"] = kps
    target["area"] = target["area"] * (sx * sy)
    target["size"] = torch.tensor([height, width])
    return image, target


def crop(image: Image.Image, target: dict, region: tuple[int, int, int, int]):
    """Crop (top, left, h, w): boxes clipped, persons left with no box area dropped,
    keypoints outside the crop set to v=0 (x = y = 0)."""
    top, left, height, width = region
    image = image.crop((left, top, left + width, top + height))
    target = dict(target)
    offset = torch.tensor([left, top, left, top], dtype=torch.float32)
    limit = torch.tensor([width, height, width, height], dtype=torch.float32)
    old_area = _box_area(target["boxes"])
    boxes = torch.minimum((target["boxes"] - offset).clamp(min=0), limit)
    kept = _box_area(boxes) > 0
    # COCO's area is the segment's; scale it by the share of the box that stays in view.
    share = torch.where(old_area > 0, _box_area(boxes) / old_area.clamp(min=1e-12),
                        torch.zeros_like(old_area))
    target["boxes"] = boxes
    target["area"] = target["area"] * share
    kps = target["keypoints"].clone()
    kps[..., 0] -= left
    kps[..., 1] -= top
    inside = ((kps[..., 0] >= 0) & (kps[..., 0] <= width) & (kps[..., 1] >= 0)
              & (kps[..., 1] <= height) & (kps[..., 2] > 0))
    kps[~inside] = 0.0
    target["keypoints"] = kps
    for key in PERSON_FIELDS:
        if key in target:
            target[key] = target[key][kept]
    crowd = torch.minimum((target["crowd_boxes"] - offset).clamp(min=0), limit)
    target["crowd_boxes"] = crowd[_box_area(crowd) > 0]
    target["size"] = torch.tensor([height, width])
    return image, target


def _box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def shorter_side_size(width: int, height: int, size: int, max_size: int | None = None):
    """(h, w) with the shorter side at `size`, shrunk so the longer side stays <= max_size."""
    if max_size is not None:
        short, long = min(width, height), max(width, height)
        if long / short * size > max_size:
            size = int(max_size * short / long)  # floor, so rounding the other side stays <= max
    if width < height:
        return round(size * height / width), size
    return size, round(size * width / height)


# ---- composable transforms ------------------------------------------------------------------
class Compose:
    def __init__(self, transforms: list):
        self.transforms = list(transforms)

    def __call__(self, image, target, generator=None):
        generator = as_torch_generator(generator)
        for t in self.transforms:
            image, target = t(image, target, generator)
        return image, target

    def __repr__(self) -> str:
        return "Compose(\n" + "".join(f"    {t!r},\n" for t in self.transforms) + ")"


class RandomHorizontalFlip:
    def __init__(self, flip_permutation: list[int], p: float = 0.5):
        self.flip_permutation = list(flip_permutation)
        self.p = p

    def __call__(self, image, target, generator=None):
        if _uniform(as_torch_generator(generator)) < self.p:
            return hflip(image, target, self.flip_permutation)
        return image, target

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Resize:
    """Deterministic: shorter side to `size`, longer side at most `max_size`."""

    def __init__(self, size: int, max_size: int | None = None):
        self.size, self.max_size = size, max_size

    def __call__(self, image, target, generator=None):
        return resize(image, target, shorter_side_size(image.width, image.height, self.size,
                                                       self.max_size))

    def __repr__(self) -> str:
        return f"Resize({self.size}, max_size={self.max_size})"


class RandomResize:
    """Shorter side to one of `sizes` (uniform), longer side at most `max_size`."""

    def __init__(self, sizes: list[int], max_size: int | None = None):
        self.sizes, self.max_size = list(sizes), max_size

    def __call__(self, image, target, generator=None):
        size = self.sizes[_randint(as_torch_generator(generator), 0, len(self.sizes) - 1)]
        return resize(image, target, shorter_side_size(image.width, image.height, size,
                                                       self.max_size))

    def __repr__(self) -> str:
        return f"RandomResize({self.sizes}, max_size={self.max_size})"


class RandomSizeCrop:
    """A crop of random size in [min_size, max_size] per side (capped by the image), anywhere."""

    def __init__(self, min_size: int, max_size: int):
        self.min_size, self.max_size = min_size, max_size

    def __call__(self, image, target, generator=None):
        g = as_torch_generator(generator)
        w = _randint(g, min(image.width, self.min_size), min(image.width, self.max_size))
        h = _randint(g, min(image.height, self.min_size), min(image.height, self.max_size))
        top = _randint(g, 0, image.height - h)
        left = _randint(g, 0, image.width - w)
        return crop(image, target, (top, left, h, w))

    def __repr__(self) -> str:
        return f"RandomSizeCrop({self.min_size}, {self.max_size})"


class RandomSelect:
    """first with probability p, else second (DETR's scale-or-crop choice)."""

    def __init__(self, first, second, p: float = 0.5):
        self.first, self.second, self.p = first, second, p

    def __call__(self, image, target, generator=None):
        g = as_torch_generator(generator)
        chosen = self.first if _uniform(g) < self.p else self.second
        return chosen(image, target, g)

    def __repr__(self) -> str:
        return f"RandomSelect({self.first!r}, {self.second!r}, p={self.p})"


class ColorJitter:
    """torchvision's colour jitter (same factor ranges and random order), drawn from `generator`.

    Hue is off by default: it costs an RGB -> HSV -> RGB round trip per image, the slowest
    step of the pipeline, for little gain on people.
    """

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2,
                 hue: float = 0.0):
        self.brightness, self.contrast, self.saturation, self.hue = (
            brightness, contrast, saturation, hue)

    def __call__(self, image, target, generator=None):
        g = as_torch_generator(generator)
        ops = [
            (F.adjust_brightness, self.brightness, 1.0),
            (F.adjust_contrast, self.contrast, 1.0),
            (F.adjust_saturation, self.saturation, 1.0),
            (F.adjust_hue, self.hue, 0.0),
        ]
        for i in torch.randperm(4, generator=g).tolist():
            op, amount, centre = ops[i]
            if amount > 0:
                image = op(image, _uniform(g, centre - amount, centre + amount))
        return image, target

    def __repr__(self) -> str:
        return (f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, "
                f"saturation={self.saturation}, hue={self.hue})")


class ToTensor:
    """PIL RGB -> float tensor (3, H, W) in [0, 1]."""

    def __call__(self, image, target, generator=None):
        # numpy, not torch ops: in a main-process DataLoader torch would spread these small
        # per-image operations over its thread pool, many times slower on a busy CPU.
        pixels = np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1), dtype=np.float32)
        pixels *= 1.0 / 255.0
        return torch.from_numpy(pixels), target

    def __repr__(self) -> str:
        return "ToTensor()"


class Normalize:
    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.mean, self.std = list(mean), list(std)

    def __call__(self, image, target, generator=None):
        mean = np.asarray(self.mean, dtype=np.float32).reshape(-1, 1, 1)
        std = np.asarray(self.std, dtype=np.float32).reshape(-1, 1, 1)
        if image.device.type == "cpu":  # numpy, for the reason given in ToTensor
            pixels = image.numpy() - mean
            pixels /= std
            return torch.from_numpy(pixels), target
        return (image - torch.from_numpy(mean).to(image)) / torch.from_numpy(std).to(image), target

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


# ---- the two pipelines ------------------------------------------------------------------------
def train_transforms(schema, sizes: list[int], max_size: int, crop: bool = True,
                     color_jitter: bool = True, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Compose:
    """DETR's recipe: flip, then either a multi-scale resize or resize-crop-resize, colour
    jitter, normalise. The crop stage is scaled from DETR's numbers for an 800 px top size
    (pre-resize 400/500/600, crop 384..600)."""
    top = max(sizes)
    scale_or_crop = RandomResize(sizes, max_size)
    if crop:
        pre_sizes = sorted({round(top * f) for f in (0.5, 0.625, 0.75)})
        scale_or_crop = RandomSelect(
            scale_or_crop,
            Compose([RandomResize(pre_sizes),
                     RandomSizeCrop(round(top * 0.48), round(top * 0.75)),
                     RandomResize(sizes, max_size)]),
        )
    steps = [RandomHorizontalFlip(schema.flip_permutation), scale_or_crop]
    if color_jitter:
        steps.append(ColorJitter())
    return Compose(steps + [ToTensor(), Normalize(mean, std)])


def flip_resize_transforms(schema, size: int, max_size: int | None = None,
                           mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Compose:
    """Training with cached backbone features: a random flip, then the eval resize; each
    image has two possible inputs, so their features can be reused."""
    return Compose([RandomHorizontalFlip(schema.flip_permutation),
                    *eval_transforms(size, max_size, mean, std).transforms])


def eval_transforms(size: int, max_size: int | None = None, mean=IMAGENET_MEAN,
                    std=IMAGENET_STD) -> Compose:
    """Deterministic: resize (shorter side to `size`), normalise."""
    return Compose([Resize(size, max_size), ToTensor(), Normalize(mean, std)])

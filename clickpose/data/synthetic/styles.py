"""The two looks of synthetic people: `photo` (in domain) and `art` (out of domain).

A style decides colours, shapes and backgrounds; the geometry and the keypoints are the
same for both, so a model's drop from photo to art measures the domain gap alone.
`photo`: shaded figures in natural skin and clothing colours, textured clothes, outdoor or
indoor backgrounds with soft texture, blur and sensor noise. `art`: flat cartoon palette,
thick black outlines, boxy heads or stick limbs, patterned backgrounds.
"""
from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from clickpose.data.synthetic.render import Color, Look

STYLES = ("photo", "art")

SKIN_TONES = [(255, 224, 196), (241, 194, 167), (224, 172, 138), (198, 134, 98),
              (160, 103, 72), (120, 80, 56), (87, 58, 42)]
HAIR_COLOURS = [(20, 17, 15), (59, 38, 26), (106, 78, 48), (181, 145, 92), (140, 140, 140),
                (120, 55, 30), (230, 220, 200)]
CARTOON_COLOURS = [(230, 40, 40), (40, 90, 230), (250, 210, 30), (40, 180, 70),
                   (250, 130, 20), (160, 60, 200), (250, 110, 170), (30, 200, 210),
                   (255, 255, 255), (40, 40, 40)]
CARTOON_SKIN = [(255, 215, 0), (255, 205, 170), (170, 120, 80), (120, 220, 120),
                (130, 180, 255), (255, 160, 200)]


def _hsv(h: float, s: float, v: float) -> Color:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def _pick(rng: np.random.Generator, options: list[Color]) -> Color:
    return options[int(rng.integers(len(options)))]


def _jitter(rng: np.random.Generator, c: Color, amount: int = 12) -> Color:
    return tuple(int(np.clip(v + rng.integers(-amount, amount + 1), 0, 255)) for v in c)


def _clothing(rng: np.random.Generator) -> Color:
    """Everyday clothing: mostly muted colours, some dark, some bright."""
    kind = rng.random()
    if kind < 0.3:
        return _hsv(rng.random(), rng.uniform(0, 0.15), rng.uniform(0.1, 0.95))  # greys
    if kind < 0.85:
        return _hsv(rng.random(), rng.uniform(0.2, 0.6), rng.uniform(0.25, 0.85))
    return _hsv(rng.random(), rng.uniform(0.6, 0.95), rng.uniform(0.6, 1.0))


# ---- looks ---------------------------------------------------------------------------------
def sample_look(rng: np.random.Generator, style: str, height_px: float) -> Look:
    if style == "photo":
        skin = _jitter(rng, _pick(rng, SKIN_TONES), 10)
        shirt = _clothing(rng)
        sleeves = rng.random()
        upper = skin if sleeves < 0.1 else shirt
        fore = shirt if sleeves > 0.55 else skin
        pants = _clothing(rng)
        shorts = rng.random() < 0.25
        stripes = _clothing(rng) if rng.random() < 0.35 else None
        return Look(skin=skin, hair=_jitter(rng, _pick(rng, HAIR_COLOURS), 8), shirt=shirt,
                    upper_arms=upper, forearms=fore, pants=pants,
                    shins=skin if shorts else pants,
                    shoes=_hsv(rng.random(), rng.uniform(0, 0.4), rng.uniform(0.05, 0.5)),
                    taper=float(rng.uniform(0.7, 0.85)), shade=float(rng.uniform(0.15, 0.35)),
                    light=(float(rng.uniform(-0.8, 0.8)), -0.7),
                    stripes=stripes, stripe_period=float(rng.uniform(0.015, 0.04) * height_px),
                    stripe_angle=float(rng.choice([0.0, 90.0, 45.0, -45.0])))
    if style == "art":
        colours = list(CARTOON_COLOURS)
        shirt, pants, shoes = (colours[i] for i in rng.choice(len(colours), 3, replace=False))
        skin = _pick(rng, CARTOON_SKIN)
        long_sleeves = rng.random() < 0.5
        return Look(skin=skin, hair=_pick(rng, CARTOON_COLOURS), shirt=shirt,
                    upper_arms=shirt, forearms=shirt if long_sleeves else skin, pants=pants,
                    shins=pants if rng.random() < 0.7 else skin, shoes=shoes,
                    eyes=(0, 0, 0), outline=(0, 0, 0),
                    outline_width=max(1, round(height_px * float(rng.uniform(0.008, 0.018)))),
                    boxy=bool(rng.random() < 0.6), taper=1.0, shade=0.0)
    raise ValueError(f"unknown style '{style}'; choose one of {', '.join(STYLES)}")


# ---- backgrounds ---------------------------------------------------------------------------
def _gradient(size: int, top: Color, bottom: Color, start: int, stop: int) -> np.ndarray:
    """(stop - start, size, 3) float rows blending top -> bottom."""
    t = np.linspace(0.0, 1.0, max(stop - start, 1))[:, None, None]
    rows = (1 - t) * np.asarray(top, float) + t * np.asarray(bottom, float)
    return np.broadcast_to(rows, (max(stop - start, 1), size, 3))


def _soft_texture(rng: np.random.Generator, size: int, cells: int, strength: float):
    """Low-frequency blotches (size, size, 3), mostly brightness, a little colour."""
    small = 128 + rng.uniform(-strength, strength, size=(cells, cells, 1)) \
        + rng.uniform(-strength / 4, strength / 4, size=(cells, cells, 3))
    big = Image.fromarray(small.astype(np.uint8)).resize((size, size), Image.BICUBIC)
    return np.asarray(big, dtype=np.float32) - 128.0


def seat_colour(rng: np.random.Generator, style: str) -> Color:
    """A chair or bench for a sitting person: wood, metal or plastic; cartoon in `art`."""
    if style == "art":
        return _pick(rng, CARTOON_COLOURS)
    return _pick(rng, [(110, 75, 45), (150, 110, 70), (90, 90, 95), (60, 60, 60),
                       (200, 200, 205), (40, 70, 120)])


def background(rng: np.random.Generator, style: str, size: int, horizon: float) -> Image.Image:
    if style == "photo":
        return _photo_background(rng, size, horizon)
    return _art_background(rng, size)


def _photo_background(rng: np.random.Generator, size: int, horizon: float) -> Image.Image:
    h = int(np.clip(horizon, 1, size - 1))
    img = np.empty((size, size, 3), np.float32)
    if rng.random() < 0.6:   # outdoors: sky over ground
        sky = _hsv(rng.uniform(0.52, 0.64), rng.uniform(0.05, 0.5), rng.uniform(0.7, 1.0))
        ground = _hsv(rng.choice([0.08, 0.1, 0.25, 0.3, 0.0]), rng.uniform(0.1, 0.5),
                      rng.uniform(0.3, 0.7))
        img[:h] = _gradient(size, _jitter(rng, sky, 20), sky, 0, h)
        img[h:] = _gradient(size, ground, _jitter(rng, ground, 25), h, size)
    else:                    # indoors: wall over floor
        wall = _hsv(rng.random(), rng.uniform(0.0, 0.3), rng.uniform(0.5, 0.95))
        floor = _hsv(rng.uniform(0.05, 0.12), rng.uniform(0.2, 0.6), rng.uniform(0.25, 0.7))
        img[:h] = _gradient(size, wall, _jitter(rng, wall, 20), 0, h)
        img[h:] = _gradient(size, floor, _jitter(rng, floor, 20), h, size)
    img += _soft_texture(rng, size, int(rng.integers(4, 12)), float(rng.uniform(5, 25)))
    image = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    _photo_clutter(rng, ImageDraw.Draw(image), size, h)
    return image


def _photo_clutter(rng: np.random.Generator, draw: ImageDraw.ImageDraw, size: int,
                   horizon: int) -> None:
    """Things that are not people: buildings, trees, poles, boxes, bushes, tables."""
    for _ in range(int(rng.integers(2, 9))):
        kind = int(rng.integers(6))
        x = float(rng.uniform(-0.1, 1.1) * size)
        base = float(horizon + rng.uniform(0, 0.3) * size)
        s = float(size * np.exp(rng.uniform(np.log(0.05), np.log(0.6))))
        colour = _clothing(rng)
        dark = tuple(int(v * 0.6) for v in colour)
        if kind == 0:    # building with windows
            w, h = s * rng.uniform(0.6, 1.5), s * rng.uniform(0.8, 2.0)
            draw.rectangle([x, base - h, x + w, base], fill=colour)
            step = max(w / 5, 3)
            for wx in np.arange(x + step / 2, x + w - step / 2, step):
                for wy in np.arange(base - h + step / 2, base - step, step * 1.3):
                    draw.rectangle([wx, wy, wx + step * 0.5, wy + step * 0.6], fill=dark)
        elif kind == 1:  # tree
            trunk = (int(rng.integers(70, 110)), int(rng.integers(45, 70)), 30)
            draw.rectangle([x - s * 0.05, base - s, x + s * 0.05, base], fill=trunk)
            leaf = _hsv(rng.uniform(0.2, 0.35), rng.uniform(0.4, 0.8), rng.uniform(0.25, 0.6))
            draw.ellipse([x - s * 0.4, base - s * 1.5, x + s * 0.4, base - s * 0.7], fill=leaf)
        elif kind == 2:  # pole or lamp post
            draw.rectangle([x, base - s * 1.5, x + max(s * 0.03, 1), base], fill=dark)
        elif kind == 3:  # box / crate
            w = s * rng.uniform(0.3, 0.8)
            draw.rectangle([x, base - w, x + w, base], fill=colour, outline=dark)
        elif kind == 4:  # bush or rock
            draw.ellipse([x - s * 0.4, base - s * 0.4, x + s * 0.4, base + s * 0.05],
                         fill=_jitter(rng, colour, 30))
        else:            # table: top and legs
            w = s * rng.uniform(0.6, 1.2)
            draw.rectangle([x, base - s * 0.45, x + w, base - s * 0.4], fill=dark)
            for lx in (x + w * 0.05, x + w * 0.9):
                draw.rectangle([lx, base - s * 0.4, lx + max(s * 0.04, 1), base], fill=dark)


def _art_background(rng: np.random.Generator, size: int) -> Image.Image:
    colours = list(CARTOON_COLOURS) + [_hsv(rng.random(), 0.3, 1.0)]
    ia, ib = rng.choice(len(colours), 2, replace=False)
    base, ink = colours[ia], colours[ib]
    image = Image.new("RGB", (size, size), base)
    draw = ImageDraw.Draw(image)
    pattern = int(rng.integers(5))
    step = int(rng.integers(max(size // 24, 4), max(size // 6, 6)))
    if pattern == 0:    # polka dots
        r = step * rng.uniform(0.15, 0.35)
        for y in range(0, size + step, step):
            for x in range((y // step % 2) * step // 2, size + step, step):
                draw.ellipse([x - r, y - r, x + r, y + r], fill=ink)
    elif pattern == 1:  # checkerboard
        for y in range(0, size, step):
            for x in range(((y // step) % 2) * step, size, 2 * step):
                draw.rectangle([x, y, x + step - 1, y + step - 1], fill=ink)
    elif pattern == 2:  # diagonal stripes
        w = max(1, step // 3)
        for c in range(-size, 2 * size, step):
            draw.line([(c, 0), (c + size, size)], fill=ink, width=w)
    elif pattern == 3:  # concentric rings
        cx, cy = rng.uniform(0, size, 2)
        for r in range(step, 2 * size, step):
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=ink, width=max(1, step // 4))
    else:               # zigzag
        w = max(1, step // 4)
        for y in range(0, size + step, step):
            pts = [(x, y + (step // 2 if (x // step) % 2 else 0)) for x in range(0, size + step,
                                                                             step)]
            draw.line(pts, fill=ink, width=w)
    for _ in range(int(rng.integers(1, 6))):   # cartoon props: stars, triangles, blocks
        cx, cy = rng.uniform(0, size, 2)
        r = float(size * rng.uniform(0.04, 0.15))
        n = int(rng.choice([3, 4, 5, 10]))
        ang = np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, np.pi)
        radius = np.where(np.arange(n) % 2 == 1, r * 0.45, r) if n == 10 else np.full(n, r)
        pts = [(cx + rr * np.cos(a), cy + rr * np.sin(a)) for a, rr in zip(ang, radius)]
        draw.polygon(pts, fill=_pick(rng, CARTOON_COLOURS), outline=(0, 0, 0),
                     width=max(1, size // 100))
    return image


# ---- finishing -----------------------------------------------------------------------------
def finish(rng: np.random.Generator, style: str, image: Image.Image) -> Image.Image:
    """Camera-like degradations for `photo` (soft focus, exposure, sensor noise); `art` stays
    crisp."""
    if style != "photo":
        return image
    centre = float(rng.uniform(2.0, 12.0))        # lower centre weight = softer image
    image = image.filter(ImageFilter.Kernel((3, 3), [1, 2, 1, 2, centre, 2, 1, 2, 1]))
    gain, bias = rng.uniform(0.85, 1.15), rng.uniform(-15, 15)
    lut = np.clip(np.arange(256) * gain + bias, 0, 255).astype(np.uint8).tolist()
    image = image.point(lut * 3)
    sigma = float(rng.uniform(1.5, 6.0))
    noise = (rng.standard_normal((image.height, image.width, 1), dtype=np.float32) * sigma)
    arr = np.asarray(image, dtype=np.int16) + noise.astype(np.int16)  # grain shared by channels
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))

"""Distinct synthetic textured images and the kinds of copy a textbook reuse makes of them.

Used by tests/test_audit.py (planted near-duplicates) and cited by mm_skin/image_hashes.py's
measurements. Each image mixes smoothed random fields of a random scale, random ellipses and a random
colour mix, so any two differ in structure, not just in colour (flat colours would make
perceptual hashes look better than they are).
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance
from scipy.ndimage import gaussian_filter


def textured_image(seed: int, size: tuple[int, int] = (320, 256)) -> Image.Image:
    """A distinct RGB texture: smoothed noise at a random scale + ellipses, coloured at random."""
    rng = np.random.default_rng(seed)
    width, height = size
    fields = []
    for _ in range(3):
        sigma = rng.uniform(2.0, 14.0)
        field = gaussian_filter(rng.standard_normal((height, width)), sigma)
        fields.append((field - field.mean()) / (field.std() + 1e-9))
    mixed = np.stack(fields, axis=-1) @ rng.uniform(-1.0, 1.0, (3, 3))
    pixels = np.clip(128 + 40 * mixed + rng.uniform(-30, 30, 3), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 7))):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(8, width / 4), rng.uniform(8, height / 4)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=colour)
    return image


def png_bytes(image: Image.Image) -> bytes:
    """The image as PNG bytes (fast zlib level: the tests encode hundreds)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _resized(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    scale = rng.uniform(0.5, 0.9)
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        Image.Resampling.BILINEAR)


def _jpeg(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(60, 90)))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _cropped(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    # Up to 10% of each dimension removed, split at random between the two sides.
    cut_w, cut_h = (int(rng.uniform(0.02, 0.10) * d) for d in image.size)
    left, top = int(rng.integers(0, cut_w + 1)), int(rng.integers(0, cut_h + 1))
    return image.crop((left, top, image.width - (cut_w - left), image.height - (cut_h - top)))


def _brightness(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    factor = rng.choice([-1, 1]) * rng.uniform(0.08, 0.15)
    return ImageEnhance.Brightness(image).enhance(1 + factor)


def _colour(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    # Mild colour cast: each channel scaled by +-10% and shifted by up to 12 levels.
    pixels = np.asarray(image, dtype=np.float32)
    pixels = pixels * rng.uniform(0.9, 1.1, 3) + rng.uniform(-12, 12, 3)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _combined(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    # A figure reused in a later edition: resized, recoloured and saved as JPEG.
    return _jpeg(_colour(_resized(image, rng), rng), rng)


COPY_KINDS: dict[str, Callable[[Image.Image, np.random.Generator], Image.Image]] = {
    "resized 50-90%": _resized,
    "JPEG round trip": _jpeg,
    "crop up to 10%": _cropped,
    "brightness +-15%": _brightness,
    "mild colour shift": _colour,
    "resize+colour+JPEG": _combined,
}


def planted_copy(image: Image.Image, kind: str, seed: int) -> Image.Image:
    """A copy of ``image`` of the named kind (one of ``COPY_KINDS``), reproducible by ``seed``."""
    return COPY_KINDS[kind](image, np.random.default_rng(seed))


def dermoscopy_like(seed: int, size: tuple[int, int] = (320, 256)) -> Image.Image:
    """A harder negative: the same round dark-cornered field of view around a different lesion.

    Dermoscopy figures share this layout, which dominates the low frequencies perceptual hashes
    keep; distinct images of this kind must still not pair up.
    """
    rng = np.random.default_rng(10_000 + seed)
    width, height = size
    lesion = np.asarray(textured_image(seed, size), dtype=np.float32)
    skin = np.array([rng.uniform(200, 235), rng.uniform(150, 185), rng.uniform(120, 160)], np.float32)
    ys, xs = np.mgrid[0:height, 0:width]
    cx, cy = width * rng.uniform(0.4, 0.6), height * rng.uniform(0.4, 0.6)
    radius = min(width, height) * rng.uniform(0.15, 0.3)
    blob = gaussian_filter(rng.standard_normal((height, width)), 6) * radius * 2.5
    inside = (np.hypot(xs - cx, ys - cy) + blob < radius)[..., None]
    pixels = np.where(inside, 0.5 * lesion + 0.5 * skin * 0.55, skin + 0.15 * (lesion - 128))
    field = np.hypot(xs - width / 2, ys - height / 2) < min(width, height) * 0.49
    return Image.fromarray(np.clip(pixels * field[..., None], 0, 255).astype(np.uint8), "RGB")

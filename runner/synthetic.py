"""A built-in set of procedural face drawings, so that training runs with nothing downloaded.

Each image is a skin-toned ellipse on a two-colour gradient background, with two eyes, a mouth, eyebrows
and (usually) hair. Every parameter is drawn per image from one seeded generator, and the drawing is
vectorised over a block of images, so 2,000 images of 64x64 take a fraction of a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from runner.errors import RunError

F32 = npt.NDArray[np.float32]

MIN_SIZE = 8
# Images are drawn in blocks of about this many pixels: a block's float32 temporaries (6 MB each) stay in
# cache, which measured twice as fast as blocks of 8M pixels.
_BLOCK_PIXELS = 500_000

_SKIN_LIGHT = np.array([0.98, 0.84, 0.72], dtype=np.float32)
_SKIN_DARK = np.array([0.42, 0.27, 0.17], dtype=np.float32)
_HAIR = np.array(
    [[0.08, 0.06, 0.05], [0.30, 0.18, 0.08], [0.60, 0.42, 0.20], [0.85, 0.75, 0.45], [0.55, 0.20, 0.08]],
    dtype=np.float32,
)
# Uniform numbers drawn per image by _draw_params.
_PARAM_COLUMNS = 33
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def synthetic_faces(n: int, shape: tuple[int, int, int], seed: int) -> npt.NDArray[np.uint8]:
    """``n`` face-like drawings as uint8 of shape (n, H, W, C); the same ``seed`` gives the same images.

    ``shape`` is (H, W, C) with H and W at least 8 and C 1 (grey) or 3 (RGB).
    """
    height, width, channels = shape
    if n < 0:
        raise RunError(f"synthetic faces: count {n} is negative")
    if height < MIN_SIZE or width < MIN_SIZE or channels not in (1, 3):
        raise RunError(
            f"synthetic faces: cannot draw {height}x{width} with {channels} channel(s); "
            f"need H and W >= {MIN_SIZE} and 1 or 3 channels"
        )
    params = _draw_params(n, np.random.default_rng(seed))
    out = np.empty((n, height, width, channels), dtype=np.uint8)
    step = max(1, _BLOCK_PIXELS // (height * width))
    for lo in range(0, n, step):
        rgb = _render(params.slice(lo, min(n, lo + step)), height, width)
        out[lo : lo + step] = _to_uint8(rgb, channels)
    return out


@dataclass(frozen=True)
class _Params:
    """Per-image drawing parameters, each an array of shape (n, 1, 1) or (n, 1, 1, 3) for colours.

    Positions and radii are fractions of the image height/width, so any size draws the same face.
    """

    bg_top: F32
    bg_bottom: F32
    bg_angle: F32
    face_x: F32
    face_y: F32
    face_rx: F32
    face_ry: F32
    skin: F32
    hair: F32
    hair_on: F32
    hair_lift: F32
    eye_dx: F32
    eye_y: F32
    eye_r: F32
    iris: F32
    mouth_y: F32
    mouth_rx: F32
    mouth_ry: F32
    lips: F32

    def slice(self, lo: int, hi: int) -> _Params:
        return _Params(**{name: value[lo:hi] for name, value in self.__dict__.items()})


def _draw_params(n: int, rng: np.random.Generator) -> _Params:
    # One row of uniforms per image, so image i looks the same however many images are asked for.
    columns = iter(rng.random((n, _PARAM_COLUMNS), dtype=np.float32).T)

    def uniform(lo: float, hi: float) -> F32:
        return np.asarray(lo + (hi - lo) * next(columns), dtype=np.float32)[:, None, None]

    def colour(lo: float, hi: float) -> F32:
        return np.stack([uniform(lo, hi) for _ in range(3)], axis=-1)

    tone = uniform(0.0, 1.0)[..., None]
    hair_index = np.minimum((uniform(0.0, 1.0) * len(_HAIR)).astype(np.intp), len(_HAIR) - 1)
    return _Params(
        bg_top=colour(0.0, 1.0),
        bg_bottom=colour(0.0, 1.0),
        bg_angle=uniform(-0.6, 0.6),
        face_x=uniform(0.42, 0.58),
        face_y=uniform(0.47, 0.60),
        face_rx=uniform(0.22, 0.32),
        face_ry=uniform(0.30, 0.40),
        skin=_SKIN_LIGHT * (1 - tone) + _SKIN_DARK * tone + colour(-0.04, 0.04),
        hair=_HAIR[hair_index] + colour(-0.05, 0.05),
        hair_on=(uniform(0.0, 1.0) < 0.8).astype(np.float32),
        hair_lift=uniform(0.05, 0.14),
        eye_dx=uniform(0.33, 0.45),
        eye_y=uniform(-0.28, -0.12),
        eye_r=uniform(0.035, 0.055),
        iris=colour(0.05, 0.45),
        mouth_y=uniform(0.38, 0.52),
        mouth_rx=uniform(0.25, 0.45),
        mouth_ry=uniform(0.05, 0.10),
        lips=np.array([0.65, 0.20, 0.22], dtype=np.float32) + colour(-0.12, 0.12),
    )


def _render(p: _Params, height: int, width: int) -> F32:
    """Paint background, hair, face, eyes, brows and mouth, back to front, as float RGB in [0, 1].

    The canvas is channels-first (3, n, H, W): with the channel axis innermost numpy's loops run three
    elements long, and painting is six times slower.
    """
    y = _pixel_centres(height)[:, None]
    x = _pixel_centres(width)[None, :]
    # About one pixel of soft edge, whatever the size: keeps small images from looking jagged.
    edge = np.float32(max(height, width))

    t = np.clip(y + p.bg_angle * (x - 0.5), 0.0, 1.0)
    img = _cf(p.bg_top) * (1 - t) + _cf(p.bg_bottom) * t

    hair_ry = p.face_ry + p.hair_lift
    hair = _ellipse(x, y, p.face_x, p.face_y - p.hair_lift, p.face_rx * 1.18, hair_ry, edge) * p.hair_on
    img = _paint(img, hair, _cf(p.hair))

    face = _ellipse(x, y, p.face_x, p.face_y, p.face_rx, p.face_ry, edge)
    # Darken the skin towards the rim so the face reads as round rather than a flat disc.
    rim = np.clip(((x - p.face_x) / p.face_rx) ** 2 + ((y - p.face_y) / p.face_ry) ** 2, 0.0, 1.0)
    img = _paint(img, face, _cf(p.skin) * (1 - np.float32(0.25) * rim))

    eye_y = p.face_y + p.eye_y * p.face_ry
    for side in (-1.0, 1.0):
        eye_x = p.face_x + side * p.eye_dx * p.face_rx
        white = _ellipse(x, y, eye_x, eye_y, p.eye_r * 1.6, p.eye_r, edge)
        img = _paint(img, white, np.float32(0.95))
        img = _paint(img, _ellipse(x, y, eye_x, eye_y, p.eye_r * 0.8, p.eye_r * 0.8, edge), _cf(p.iris))
        brow = _ellipse(x, y, eye_x, eye_y - p.eye_r * 2.2, p.eye_r * 1.9, p.eye_r * 0.45, edge)
        img = _paint(img, brow, _cf(p.hair) * 0.8)

    mouth_y = p.face_y + p.mouth_y * p.face_ry
    mouth = _ellipse(x, y, p.face_x, mouth_y, p.mouth_rx * p.face_rx, p.mouth_ry * p.face_ry, edge)
    return _paint(img, mouth, _cf(p.lips))


def _pixel_centres(size: int) -> F32:
    return np.asarray((np.arange(size) + 0.5) / size, dtype=np.float32)


def _ellipse(x: F32, y: F32, cx: F32, cy: F32, rx: F32, ry: F32, edge: np.float32) -> F32:
    """Coverage in [0, 1] of an ellipse, with a soft edge about one pixel wide."""
    dist = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    return np.clip((1.0 - dist) * np.minimum(rx, ry) * edge, 0.0, 1.0)


def _paint(img: F32, alpha: F32, colour: F32 | np.float32) -> F32:
    """Blend ``colour`` over the (3, n, H, W) canvas with coverage ``alpha`` (n, H, W), in place."""
    step = colour - img
    step *= alpha
    img += step
    return img


def _cf(colour: F32) -> F32:
    """(n, 1, 1, 3) colours as (3, n, 1, 1), to broadcast against the channels-first canvas."""
    return np.moveaxis(colour, -1, 0)


def _to_uint8(rgb: F32, channels: int) -> npt.NDArray[np.uint8]:
    """(3, n, H, W) floats in [0, 1] to (n, H, W, C) uint8, grey by the ITU-R 601 luma weights."""
    if channels == 1:
        rgb = np.tensordot(_LUMA, rgb, axes=1)[None]
    scaled = np.clip(rgb * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)
    return np.moveaxis(scaled, 0, -1)

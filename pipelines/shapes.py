"""Drawing of the embedded data set's images: numpy + Pillow, no TensorFlow.

Each class is a shape (not a colour), so colour augmentation and PCA lighting keep the
label. Shapes are polygons in unit coordinates ([-1, 1], y down); a shape may have
holes (ring, crescent). Boxes are measured on the drawn mask, so they are tight.
"""

import io
import math

import numpy as np
from PIL import Image, ImageDraw

Polygon = list[tuple[float, float]]


def _regular(
    n: int, radius: float = 1.0, cx: float = 0.0, cy: float = 0.0, phase: float = -math.pi / 2
) -> Polygon:
    return [
        (
            cx + radius * math.cos(phase + 2 * math.pi * k / n),
            cy + radius * math.sin(phase + 2 * math.pi * k / n),
        )
        for k in range(n)
    ]


def _star(points: int = 5, inner: float = 0.42) -> Polygon:
    outer = _regular(points)
    inner_pts = _regular(points, inner, phase=-math.pi / 2 + math.pi / points)
    return [p for pair in zip(outer, inner_pts) for p in pair]


def _heart() -> Polygon:
    ts = np.linspace(0, 2 * math.pi, 72, endpoint=False)
    x = 16 * np.sin(ts) ** 3
    y = -(13 * np.cos(ts) - 5 * np.cos(2 * ts) - 2 * np.cos(3 * ts) - np.cos(4 * ts))
    return list(zip(x / 17.0, (y + 2.5) / 15.0))


# name -> (filled polygons, hole polygons). Rotations stay within +-20 degrees so that
# square and diamond remain distinct.
SHAPES: dict[str, tuple[list[Polygon], list[Polygon]]] = {
    "circle": ([_regular(64)], []),
    "ring": ([_regular(64)], [_regular(64, 0.55)]),
    "triangle": ([[(0, -1), (1, 0.8), (-1, 0.8)]], []),
    "square": ([[(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)]], []),
    "diamond": ([[(0, -1), (1, 0), (0, 1), (-1, 0)]], []),
    "star": ([_star()], []),
    "cross": (
        [
            [
                (-0.3, -1),
                (0.3, -1),
                (0.3, -0.3),
                (1, -0.3),
                (1, 0.3),
                (0.3, 0.3),
                (0.3, 1),
                (-0.3, 1),
                (-0.3, 0.3),
                (-1, 0.3),
                (-1, -0.3),
                (-0.3, -0.3),
            ]
        ],
        [],
    ),
    "crescent": ([_regular(64)], [_regular(64, 0.85, cx=0.45, cy=-0.15)]),
    "arrow": (
        [[(-1, -0.3), (0.15, -0.3), (0.15, -0.8), (1, 0), (0.15, 0.8), (0.15, 0.3), (-1, 0.3)]],
        [],
    ),
    "heart": ([_heart()], []),
    "hourglass": ([[(-1, -1), (1, -1), (0.12, 0), (1, 1), (-1, 1), (-0.12, 0)]], []),
    "lshape": ([[(-1, -1), (-0.35, -1), (-0.35, 0.35), (1, 0.35), (1, 1), (-1, 1)]], []),
}
CLASS_NAMES: list[str] = list(SHAPES)

# (height, width) of the images: shorter side 256-320, a few aspect ratios.
IMAGE_SIZES = [(256, 256), (256, 320), (320, 256), (288, 288), (256, 288), (300, 256), (320, 320)]


def _background(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """A colour gradient with thin lines and small blobs: clutter, never an object."""
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, width if rng.random() < 0.5 else height)
    ramp = c0[None] + (c1 - c0)[None] * t[:, None]
    grid = np.broadcast_to(ramp[None] if len(t) == width else ramp[:, None], (height, width, 3))
    image = Image.fromarray(grid.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(20, 50)):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            xy = [float(v) for v in rng.random(4) * [width, height, width, height]]
            draw.line(xy, fill=colour, width=int(rng.integers(1, 4)))
        else:
            x, y, r = rng.random() * width, rng.random() * height, rng.integers(2, 9)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    return image


def _shape_mask(
    name: str, height: int, width: int, box: tuple[float, float, float, float], angle: float
) -> np.ndarray:
    """bool [height, width]: shape `name` rotated by `angle` (radians) and stretched to
    fill `box` = (cy, cx, half_height, half_width) in pixels."""
    cy, cx, hh, hw = box
    cos, sin = math.cos(angle), math.sin(angle)

    def place(polygon: Polygon) -> list[tuple[float, float]]:
        return [(cx + (x * cos - y * sin) * hw, cy + (x * sin + y * cos) * hh) for x, y in polygon]

    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    filled, holes = SHAPES[name]
    for polygon in filled:
        draw.polygon(place(polygon), fill=255)
    for polygon in holes:
        draw.polygon(place(polygon), fill=0)
    return np.asarray(mask) > 127


def _tight_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Normalised (ymin, xmin, ymax, xmax) of the mask's pixels (pixel edges)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return rows[0] / h, cols[0] / w, (rows[-1] + 1) / h, (cols[-1] + 1) / w


def _object_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A colour far (L1 > 150) from the mean background colour under the object."""
    for _ in range(100):
        colour = rng.integers(0, 256, 3)
        if np.abs(colour - background).sum() > 150:
            return colour
    return 255 - background.astype(np.int64)


def render(
    rng: np.random.Generator,
    num_objects: int,
    size_range: tuple[float, float],
    num_classes: int = len(CLASS_NAMES),
) -> tuple[bytes, int, int, list[tuple[float, float, float, float]], list[int]]:
    """Draws one image.

    Args:
      num_objects: objects to place without overlapping boxes (fewer if no room).
      size_range: object size as a fraction of the image's shorter side.
      num_classes: objects are drawn from the first `num_classes` of `CLASS_NAMES`.

    Returns:
      (JPEG bytes at quality 90, height, width, tight normalised boxes, 0-based labels).
    """
    height, width = IMAGE_SIZES[rng.integers(len(IMAGE_SIZES))]
    image = _background(rng, height, width)
    pixels = np.asarray(image).astype(np.int16)  # int16: fast, and room for noise.
    occupied = np.zeros((height, width), bool)
    boxes, labels = [], []
    for _ in range(num_objects):
        label = int(rng.integers(num_classes))
        for _ in range(50):
            side = rng.uniform(*size_range) * min(height, width)
            aspect = math.exp(rng.uniform(-0.3, 0.3))
            hh, hw = min(side / aspect**0.5, height) / 2, min(side * aspect**0.5, width) / 2
            cy, cx = rng.uniform(hh, height - hh), rng.uniform(hw, width - hw)
            angle = math.radians(rng.uniform(-20, 20))
            mask = _shape_mask(CLASS_NAMES[label], height, width, (cy, cx, hh, hw), angle)
            ymin, xmin, ymax, xmax = _tight_box(mask)
            region = np.s_[
                int(ymin * height) : int(ymax * height), int(xmin * width) : int(xmax * width)
            ]
            if not occupied[region].any():
                break
        else:
            continue  # No free place for this object.
        occupied[region] = True
        colour = _object_colour(rng, pixels[mask].mean(axis=0))
        texture = rng.integers(-25, 26, (int(mask.sum()), 3), dtype=np.int16)
        pixels[mask] = np.clip(colour.astype(np.int16) + texture, 0, 255)
        boxes.append((ymin, xmin, ymax, xmax))
        labels.append(label)
    pixels += rng.integers(-6, 7, pixels.shape, dtype=np.int16)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue(), height, width, boxes, labels

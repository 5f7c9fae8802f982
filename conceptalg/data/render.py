"""The shared rasteriser of ``shapes`` and ``scenes``: anti-aliased circles, squares, triangles.

The rendering contract (the analytic decoder in :mod:`conceptalg.evaluation.decoder` relies on
it, so it is exact and written down here):

- An image has ``R × R`` pixels; coordinates are in units of the image width, origin at the
  top-left corner, ``x`` to the right, ``y`` down. Pixel ``(row i, column j)`` covers
  ``[j, j+1] × [i, i+1]`` in pixel units; its centre is ``((j + ½)/R, (i + ½)/R)``.
- A shape is given by its kind, the centre ``c`` of its circumscribed circle and the circumradius
  ``ρ`` (both in image-width units; in pixels ``r = ρR``):

  * ``circle``: the disc of radius ``r`` around ``c``;
  * ``square``: axis-aligned, half-side ``r/√2`` (its corners lie on the circumscribed circle);
  * ``triangle``: equilateral, apex up at ``c + (0, −r)``, flat bottom edge at ``y = c_y + r/2``
    from ``x = c_x − r√3/2`` to ``c_x + r√3/2`` (its centroid is ``c``).

- ``d(p)`` is the exact Euclidean signed distance, in pixels, from the pixel centre ``p`` to the
  shape's boundary (negative inside). The pixel's **coverage** is the clipped linear ramp of
  width one pixel centred on the edge, ``clip(½ − d(p), 0, 1)``: 1 deeper than half a pixel
  inside, 0 further than half a pixel outside. Outside a corner ``d`` is the distance to the
  corner, so the ramp is rounded there.
- A pixel's value is ``colour × coverage`` on a black background (colours are RGB in
  ``{0, 1}³``); several non-overlapping objects combine by a per-channel maximum.

Everything is vectorised over a batch of shapes; rendering runs in float32 chunks, each shape
in a window around it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["SHAPE_KINDS", "coverage", "draw", "shape_area"]

#: The shape kinds, in the order of their integer codes.
SHAPE_KINDS: tuple[str, ...] = ("circle", "square", "triangle")

_SQRT3 = math.sqrt(3.0)
_CHUNK = 2048  # shapes rendered at once: bounds the memory of the [chunk, R, R] temporaries


def shape_area(kind: str, radius: float) -> float:
    """The exact area of a shape with circumradius ``radius`` (in the radius's units squared).

    Example:
        >>> round(shape_area("square", 1.0), 6)
        2.0
    """
    if kind == "circle":
        return math.pi * radius ** 2
    if kind == "square":
        return 2.0 * radius ** 2
    if kind == "triangle":
        return 3.0 * _SQRT3 / 4.0 * radius ** 2
    raise ValueError(f"kind must be one of {SHAPE_KINDS}, got {kind!r}")


def _circle(dx: Tensor, dy: Tensor, r: Tensor) -> Tensor:
    # dx [M,1,W], dy [M,H,1], r [M,1,1] -> d [M,H,W]
    return torch.sqrt(dx * dx + dy * dy) - r


def _square(dx: Tensor, dy: Tensor, r: Tensor) -> Tensor:
    half = r / math.sqrt(2.0)
    qx = dx.abs() - half                                      # [M,1,W]
    qy = dy.abs() - half                                      # [M,H,1]
    ox, oy = qx.clamp(min=0), qy.clamp(min=0)
    outside = torch.sqrt(ox * ox + oy * oy)
    inside = torch.maximum(qx, qy).clamp(max=0)
    return outside + inside


def _segment_distance(px: Tensor, py: Tensor, ax, ay, bx, by) -> Tensor:
    ex, ey = bx - ax, by - ay
    vx, vy = px - ax, py - ay
    t = ((vx * ex + vy * ey) * (1.0 / (ex * ex + ey * ey))).clamp(0, 1)
    wx, wy = vx - t * ex, vy - t * ey
    return torch.sqrt(wx * wx + wy * wy)


def _triangle(dx: Tensor, dy: Tensor, r: Tensor) -> Tensor:
    # Fold onto the right half (the triangle is symmetric about x = c_x): there the two edges
    # that can be nearest are the right edge (apex -> bottom-right corner) and the bottom edge.
    qx, qy = dx.abs(), dy                                     # [M,1,W], [M,H,1]
    half_side = r * (_SQRT3 / 2.0)
    bottom = qy - r / 2.0                                     # signed distance to the bottom line
    right = (_SQRT3 / 2.0) * qx - 0.5 * (qy + r)              # ... to the right edge's line
    inside = torch.maximum(bottom, right)                     # [M,H,W]
    zero = torch.zeros_like(r)
    d_bottom = _segment_distance(qx, qy, zero, r / 2.0, half_side, r / 2.0)
    d_right = _segment_distance(qx, qy, zero, -r, half_side, r / 2.0)
    outside = torch.minimum(d_bottom, d_right)
    return torch.where(inside <= 0, inside, outside)


_SDF = (_circle, _square, _triangle)


def _check(kind, centres, radius) -> tuple[Tensor, Tensor, Tensor]:
    kind = torch.as_tensor(kind).long().reshape(-1)
    centres = torch.as_tensor(centres, dtype=torch.float32).reshape(-1, 2)
    radius = torch.as_tensor(radius, dtype=torch.float32).reshape(-1).to(centres.device)
    if not kind.shape[0] == centres.shape[0] == radius.shape[0]:
        raise ValueError(f"kind, centres and radius must describe the same number of shapes, "
                         f"got {kind.shape[0]}, {centres.shape[0]} and {radius.shape[0]}")
    if kind.numel() and (kind.min() < 0 or kind.max() >= len(SHAPE_KINDS)):
        raise ValueError(f"kind codes must be in 0..{len(SHAPE_KINDS) - 1} {SHAPE_KINDS}")
    return kind.to(centres.device), centres, radius


def _windows(kind: Tensor, centres: Tensor, radius: Tensor, res: int):
    """Yield ``(index [m], value [m, w*w], flat [m, w*w])``: the coverage of shapes ``index`` in
    a ``w × w`` window around each, and the flat pixel index ``row * R + col`` of every value.

    Nothing is drawn further than ``r + ½`` from the centre, so a window of side ``2r + 3``
    holds the whole shape (3× fewer pixels than the image for a large shape at 32 px).
    """
    device = centres.device
    for code, sdf in enumerate(_SDF):
        index = (kind == code).nonzero().reshape(-1)
        if index.numel() == 0:
            continue
        for chunk in index.split(_CHUNK):
            c = centres[chunk] * res                                       # [m, 2] in pixels
            r = radius[chunk] * res                                        # [m]
            win = min(res, int(math.ceil(2 * float(r.max()) + 3)))
            step = torch.arange(win, device=device)
            start = torch.floor(c - r[:, None] - 1).long().clamp(0, res - win)  # [m, 2]
            cols = start[:, 0, None] + step                                # [m, w]
            rows = start[:, 1, None] + step                                # [m, w]
            dx = (cols + 0.5 - c[:, 0, None])[:, None, :]                  # [m, 1, w]
            dy = (rows + 0.5 - c[:, 1, None])[:, :, None]                  # [m, w, 1]
            value = (0.5 - sdf(dx, dy, r[:, None, None])).clamp(0.0, 1.0)  # [m, w, w]
            flat = rows[:, :, None] * res + cols[:, None, :]               # [m, w, w]
            yield chunk, value.reshape(len(chunk), -1), flat.reshape(len(chunk), -1)


def coverage(kind: Tensor, centres: Tensor, radius: Tensor, resolution: int = 32) -> Tensor:
    """Anti-aliased coverage maps ``[M, R, R]`` in ``[0, 1]`` of ``M`` shapes (module docstring).

    ``kind`` is a LongTensor ``[M]`` of codes into :data:`SHAPE_KINDS`; ``centres`` ``[M, 2]``
    holds ``(x, y)`` and ``radius`` ``[M]`` the circumradius, both in image-width units.

    Example:
        >>> import torch
        >>> cov = coverage(torch.tensor([0]), torch.tensor([[0.5, 0.5]]), torch.tensor([0.25]))
        >>> cov.shape, float(cov[0, 16, 16])
        (torch.Size([1, 32, 32]), 1.0)
    """
    kind, centres, radius = _check(kind, centres, radius)
    res = int(resolution)
    out = torch.zeros(kind.shape[0], res * res, device=centres.device)
    for index, value, flat in _windows(kind, centres, radius, res):
        out[index] = out[index].scatter_(1, flat, value)
    return out.reshape(-1, res, res)


def draw(kind: Tensor, centres: Tensor, radius: Tensor, rgb: Tensor, resolution: int = 32,
         image: Tensor | None = None, n_images: int | None = None) -> Tensor:
    """Draw ``M`` coloured shapes into images ``[N, 3, R, R]`` by a per-channel maximum.

    ``rgb`` ``[M, 3]`` is each shape's colour; shape ``m`` goes into image ``image[m]``
    (default: one image per shape); ``n_images`` defaults to ``image.max() + 1``.

    Example:
        >>> import torch
        >>> img = draw(torch.tensor([1]), torch.tensor([[0.5, 0.5]]), torch.tensor([0.2]),
        ...            torch.tensor([[1.0, 1.0, 0.0]]))
        >>> img[0, :, 16, 16].tolist()
        [1.0, 1.0, 0.0]
    """
    kind, centres, radius = _check(kind, centres, radius)
    res = int(resolution)
    rgb = torch.as_tensor(rgb, dtype=torch.float32, device=centres.device).reshape(-1, 3)
    image = (torch.arange(kind.shape[0], device=centres.device) if image is None
             else torch.as_tensor(image, device=centres.device).long().reshape(-1))
    if n_images is None:
        n_images = int(image.max()) + 1 if image.numel() else 0
    out = torch.zeros(n_images * 3 * res * res, device=centres.device)
    plane = res * res
    for index, value, flat in _windows(kind, centres, radius, res):
        base = (image[index] * 3)[:, None, None] + torch.arange(3, device=centres.device)[:, None]
        target = base * plane + flat[:, None, :]                           # [m, 3, w*w]
        colour = rgb[index][:, :, None] * value[:, None, :]                # [m, 3, w*w]
        out.scatter_reduce_(0, target.reshape(-1), colour.reshape(-1), reduce="amax")
    return out.reshape(n_images, 3, res, res)


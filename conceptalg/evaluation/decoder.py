"""The exact analytic decoder of ``shapes`` and ``scenes`` images.

It labels an image without any learned model, by inverting the renderer of
:mod:`conceptalg.data.render`:

1. **Objects.** A pixel is *on* when its brightest channel exceeds ``threshold``; objects are
   the 8-connected components of on pixels with at least ``min_pixels`` pixels (smaller specks
   count as background). Each object owns a *territory*: its pixels grown by ``grow`` pixels.
2. **Colour.** At the object's bright pixels (brightest channel > ½) each channel is divided by
   the brightest one; the mean of these ratios must lie within ``colour_tolerance`` of a palette
   colour's 0/1 pattern.
3. **Coverage and centre.** Projecting the pixels onto the colour gives the coverage map; its
   centroid is the centre of the circumscribed circle (it is the centroid of a circle, a square
   and an equilateral triangle alike).
4. **Shape and size.** Every (shape, size) candidate is re-rendered at that centre; the two with
   the least residual (as in 5) have their centre refined by Gauss–Newton on the squared
   residual (central differences), and the better one wins.
5. **Clean.** The *fit error* sums, over all pixels, the largest channel error between the
   image cut to the territory (zero elsewhere) and the re-rendered object, each less
   ``pixel_tolerance`` (so faint noise is forgiven), and divides by the object's area in pixels.
   An object is clean when its colour is a palette colour and its fit error is at most
   ``fit_tolerance`` (about a tenth of its area may be wrong). Outside all territories the mean
   absolute pixel value must stay at most ``background_tolerance``.

A ``shapes`` image is valid when it holds exactly one object and it is clean; a ``scenes``
image when it holds 1..``max_objects`` objects, all clean and of the scene size. On rendered
data the decoder is exact: the right candidate's residual is 0 at the true centre, while a wrong
(shape, size) leaves one of more than a quarter of the object's area (measured on rendered
data). Gaussian pixel noise up to σ ≈ 0.05 is tolerated. Images are clamped to ``[0, 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.render import coverage
from ..data.scenes import MAX_OBJECTS, SCENE_SIZE, objects_near
from ..data.shapes import FACTORS, PALETTE, RADII, SHAPES, SIZES

__all__ = ["REASONS", "DecoderConfig", "ShapesDecoding", "ScenesDecoding", "decode_shapes",
           "decode_scenes"]

#: ``status`` codes: why an image is not valid (0 means it is).
REASONS: tuple[str, ...] = ("ok", "blank", "object count", "colour", "fit", "background")
_OK, _BLANK, _COUNT, _COLOUR, _FIT, _BACKGROUND = range(len(REASONS))
_CHUNK = 256  # images decoded at once


@dataclass(frozen=True)
class DecoderConfig:
    """Tolerances of the decoder (module docstring). The defaults accept every rendered image
    and a little noise, and reject blank images, noise, several objects and colour blends."""

    threshold: float = 0.3
    min_pixels: int = 3
    grow: int = 2
    colour_tolerance: float = 0.25
    pixel_tolerance: float = 0.05
    fit_tolerance: float = 0.1
    background_tolerance: float = 0.05
    refine_steps: int = 2


@dataclass
class ShapesDecoding:
    """What :func:`decode_shapes` read from ``N`` images.

    ``valid`` BoolTensor ``[N]``: one clean object. ``status`` LongTensor ``[N]`` indexes
    :data:`REASONS`. ``labels`` maps ``shape``/``color``/``size`` to LongTensor ``[N]`` of value
    indices: the best reading of the largest object even when the image is not valid, -1 when
    there is no object. ``centres`` ``[N, 2]`` (x, y; NaN without an object), ``error`` ``[N]``
    the fit error (inf without an object).
    """

    valid: Tensor
    status: Tensor
    labels: dict[str, Tensor]
    centres: Tensor
    error: Tensor

    def holds(self, concept: str) -> Tensor:
        """BoolTensor ``[N]``: the image is valid and shows ``concept`` (``red``, ``color=red``).

        Example:
            >>> from conceptalg.data.shapes import render
            >>> image = render("circle", "red", "large", 0.5, 0.5)
            >>> decode_shapes(image[None]).holds("red").tolist()
            [True]
        """
        factor, value = _resolve(concept)
        return self.valid & (self.labels[factor] == FACTORS[factor].index(value))

    def reasons(self) -> list[str]:
        """The status of each image in words."""
        return [REASONS[s] for s in self.status.tolist()]


@dataclass
class ScenesDecoding:
    """What :func:`decode_scenes` read from ``N`` images: objects in ``K`` slots, largest first.

    ``valid`` ``[N]`` (a valid 1..K-object scene), ``status`` ``[N]`` (:data:`REASONS`),
    ``counts`` ``[N]`` (objects found, possibly more than ``K``), ``mask`` ``[N, K]`` (slot
    used), ``centres`` ``[N, K, 2]``, ``shapes``/``colors``/``sizes`` LongTensor ``[N, K]`` (-1
    in unused slots), ``clean`` ``[N, K]`` and ``error`` ``[N, K]`` per object.
    """

    valid: Tensor
    status: Tensor
    counts: Tensor
    mask: Tensor
    centres: Tensor
    shapes: Tensor
    colors: Tensor
    sizes: Tensor
    clean: Tensor
    error: Tensor

    def near(self, points: Tensor, radius: float = 0.1) -> Tensor:
        """``at(x, y)`` for each query point: the scene is valid and has an object within
        ``radius`` of it. ``points`` ``[2]``, ``[N, 2]``, ``[N, Q, 2]`` or ``[1, Q, 2]`` →
        ``[N]`` or ``[N, Q]``."""
        near = objects_near(self.centres, self.mask, points, radius)
        return near & (self.valid if near.dim() == 1 else self.valid[:, None])

    def reasons(self) -> list[str]:
        """The status of each image in words."""
        return [REASONS[s] for s in self.status.tolist()]


def _resolve(concept: str) -> tuple[str, str]:
    if "=" in concept:
        factor, value = (part.strip() for part in concept.split("=", 1))
        if factor in FACTORS and value in FACTORS[factor]:
            return factor, value
    else:
        for factor, values in FACTORS.items():
            if concept in values:
                return factor, concept
    raise ValueError(f"{concept!r} is not a shapes concept: use one of "
                     f"{', '.join(v for vs in FACTORS.values() for v in vs)} or factor=value")


# --------------------------------------------------------------------------- objects


def _max3(a: Tensor) -> Tensor:
    """3×3 maximum filter of non-negative ``a`` ``[N, H, W]`` (zero beyond the border)."""
    p = F.pad(a, (1, 1, 1, 1))
    rows = torch.maximum(torch.maximum(p[:, :, :-2], p[:, :, 1:-1]), p[:, :, 2:])   # [N, H+2, W]
    return torch.maximum(torch.maximum(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])  # [N, H, W]


def _components(on: Tensor) -> Tensor:
    """8-connected components of ``on`` ``[N, H, W]``: each on pixel gets 1 + the flat index of
    its component's last pixel (label propagation by 3×3 maxima), off pixels 0."""
    n, h, w = on.shape
    ids = torch.arange(1, h * w + 1, device=on.device).reshape(1, h, w)
    labels = ids * on                                                          # [N, H, W]
    while True:  # labels only grow and are bounded, so this ends
        grown = labels
        for _ in range(4):  # check for convergence every few sweeps: each check is a sync
            grown = _max3(grown) * on
        if torch.equal(grown, labels):
            return labels
        labels = grown


def _grow(labels: Tensor, steps: int) -> Tensor:
    """Give background pixels within ``steps`` (Chebyshev) pixels of an object its label."""
    for _ in range(steps):
        labels = torch.where(labels == 0, _max3(labels), labels)
    return labels


# --------------------------------------------------------------------------- fitting


def _render(kind: Tensor, size: Tensor, centres: Tensor, rgb: Tensor, res: int) -> Tensor:
    radius = torch.tensor([RADII[s] for s in SIZES], device=centres.device)[size]
    cov = coverage(kind.reshape(-1), centres.reshape(-1, 2), radius.reshape(-1), res)
    return cov.reshape(*kind.shape, res, res)                                  # [..., R, R]


def _channel_bounds(x: Tensor, rgb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per pixel, the largest and smallest value over the colour's channels and the largest over
    the others: the largest channel error against ``rgb * cov`` is then
    ``max(off, hi - cov, cov - lo)``, with no channel dimension left. Each ``[M, 1, R, R]``."""
    on = rgb[:, :, None, None] > 0                                             # [M, 3, 1, 1]
    hi = torch.where(on, x, torch.zeros_like(x)).amax(1, keepdim=True)
    lo = torch.where(on, x, torch.ones_like(x)).amin(1, keepdim=True)
    off = torch.where(on, torch.zeros_like(x), x).amax(1, keepdim=True)
    return hi, lo, off


def _residual(bounds: tuple[Tensor, Tensor, Tensor], cov: Tensor, slack: float) -> Tensor:
    """Sum over pixels of the largest channel error, each less ``slack``: ``cov`` ``[M, C, R, R]``
    → ``[M, C]``."""
    hi, lo, off = bounds
    worst = torch.maximum(torch.maximum(hi - cov, cov - lo), off)               # [M, C, R, R]
    return (worst - slack).clamp(min=0).sum((2, 3))


def _refine(x: Tensor, rgb: Tensor, kind: Tensor, size: Tensor, centres: Tensor, res: int,
            steps: int) -> Tensor:
    """Gauss–Newton on the squared residual over the centres ``[M, C, 2]`` of candidates."""
    delta = 0.1 / res
    target = (x * rgb[:, :, None, None]).sum(1)[:, None]                      # [M, 1, R, R]
    weight = rgb.sum(1)[:, None, None, None]                                   # |rgb|^2 [M,1,1,1]
    shift = torch.tensor([[delta, 0.0], [-delta, 0.0], [0.0, delta], [0.0, -delta]],
                         device=x.device)
    for _ in range(steps):
        offsets = torch.cat([torch.zeros_like(shift[:1]), shift])              # [5, 2]
        probe = centres[:, :, None, :] + offsets                               # [M, C, 5, 2]
        cov = _render(kind[..., None].expand(probe.shape[:-1]),
                      size[..., None].expand(probe.shape[:-1]), probe, rgb, res)  # [M,C,5,R,R]
        grad = torch.stack([cov[:, :, 1] - cov[:, :, 2], cov[:, :, 3] - cov[:, :, 4]],
                           dim=2) / (2 * delta)                                # [M, C, 2, R, R]
        # residual projected on the colour: rgb . (x - rgb cov) = target - |rgb|^2 cov
        error = target - weight * cov[:, :, 0]                                 # [M, C, R, R]
        jtj = weight * torch.einsum("mcaij,mcbij->mcab", grad, grad)           # [M, C, 2, 2]
        jte = torch.einsum("mcaij,mcij->mca", grad, error)                     # [M, C, 2]
        jtj = jtj + 1e-3 * torch.eye(2, device=x.device)
        step = torch.linalg.solve(jtj, jte[..., None])[..., 0]                 # [M, C, 2]
        centres = centres + step.clamp(-1.0 / res, 1.0 / res)
    return centres


def _fit(x: Tensor, region: Tensor, sizes: tuple[int, ...], config: DecoderConfig) -> dict:
    """Read one object from each of ``M`` images ``x`` ``[M, 3, R, R]`` zero outside ``region``."""
    m, res, device = x.shape[0], x.shape[-1], x.device
    palette = PALETTE.to(device)
    # colour: mean channel ratios at bright pixels
    peak = x.amax(1)                                                           # [M, R, R]
    bright = (peak > 0.5).float()
    ratio = x / peak.clamp(min=1e-6)[:, None]
    mean_ratio = (ratio * bright[:, None]).sum((2, 3)) / bright.sum((1, 2)).clamp(min=1)[:, None]
    colour = torch.cdist(mean_ratio, palette, p=1).argmin(1)                   # [M]
    rgb = palette[colour]                                                      # [M, 3]
    colour_error = (mean_ratio - rgb).abs().amax(1)
    colour_error = torch.where(bright.sum((1, 2)) > 0, colour_error, torch.ones_like(colour_error))
    # coverage and centroid
    cov = ((x * rgb[:, :, None, None]).sum(1) / rgb.sum(1)[:, None, None]).clamp(0, 1) * region
    grid = (torch.arange(res, device=device, dtype=torch.float32) + 0.5) / res
    mass = cov.sum((1, 2)).clamp(min=1e-6)
    centre = torch.stack([(cov.sum(1) * grid).sum(1),
                          (cov.sum(2) * grid).sum(1)], 1) / mass[:, None]     # [M, 2] (x, y)
    # candidates: every shape x allowed size, rendered at the centroid
    pairs = torch.tensor([(k, s) for k in range(len(SHAPES)) for s in sizes], device=device)
    kind = pairs[:, 0].expand(m, -1)                                           # [M, C]
    size = pairs[:, 1].expand(m, -1)
    centres = centre[:, None, :].expand(m, len(pairs), 2)                      # [M, C, 2]
    slack, bounds = config.pixel_tolerance, _channel_bounds(x, rgb)
    first = _residual(bounds, _render(kind, size, centres, rgb, res), slack)   # [M, C]
    best = first.topk(min(2, len(pairs)), dim=1, largest=False).indices        # [M, 2]
    kind, size = kind.gather(1, best), size.gather(1, best)
    centres = _refine(x, rgb, kind, size, centre[:, None, :].expand(m, best.shape[1], 2), res,
                      config.refine_steps)
    cov = _render(kind, size, centres, rgb, res)                               # [M, 2, R, R]
    residual = _residual(bounds, cov, slack)                                   # [M, 2]
    pick = residual.argmin(1)
    rows = torch.arange(m, device=device)
    area = cov[rows, pick].sum((1, 2))
    return {"shape": kind[rows, pick], "size": size[rows, pick], "color": colour,
            "centre": centres[rows, pick], "colour_error": colour_error,
            "error": residual[rows, pick] / area.clamp(min=1e-6)}


# --------------------------------------------------------------------------- decoding


def _decode(images: Tensor, slots: int, sizes: tuple[int, ...], config: DecoderConfig) -> dict:
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise ValueError(f"images must be [N, 3, R, R], got {list(images.shape)}")
    x = images.detach().float().clamp(0, 1)
    n, _, res, _ = x.shape
    labels = _components(x.amax(1) > config.threshold)                         # [N, R, R]
    flat = labels.reshape(n, res * res)
    counts_per_label = torch.zeros(n, res * res + 1, device=x.device, dtype=torch.long)
    counts_per_label.scatter_add_(1, flat, torch.ones_like(flat))
    counts_per_label[:, 0] = 0
    objects = counts_per_label >= config.min_pixels                            # [N, HW+1]
    count = objects.sum(1)
    top = counts_per_label.topk(slots, dim=1)                                  # largest first
    mask = top.values >= config.min_pixels                                     # [N, K]
    kept = torch.where(objects.gather(1, flat), flat, torch.zeros_like(flat)).reshape_as(labels)
    territory = _grow(kept, config.grow)                                       # [N, R, R]
    background = territory == 0
    noise = (x * background[:, None]).sum((1, 2, 3)) / (3 * background.sum((1, 2))).clamp(min=1)

    region = territory[:, None] == top.indices[:, :, None, None]               # [N, K, R, R]
    owner, slot = mask.nonzero(as_tuple=True)
    fit = _fit(x[owner] * region[owner, slot][:, None], region[owner, slot], sizes, config)
    out = {"count": count, "mask": mask, "noise": noise,
           "centre": torch.full((n, slots, 2), float("nan"), device=x.device),
           "error": torch.full((n, slots), float("inf"), device=x.device),
           "colour_error": torch.full((n, slots), float("inf"), device=x.device)}
    for name in ("shape", "size", "color"):
        out[name] = torch.full((n, slots), -1, dtype=torch.long, device=x.device)
    for name in ("shape", "size", "color", "centre", "error", "colour_error"):
        out[name][owner, slot] = fit[name]
    return out


def _status(count: Tensor, colour_ok: Tensor, fit_ok: Tensor, noise: Tensor, allowed: Tensor,
            config: DecoderConfig) -> Tensor:
    # the first failure in the order blank, object count, colour, fit, background wins
    status = torch.full_like(count, _OK)
    status = torch.where(noise > config.background_tolerance, _BACKGROUND, status)
    status = torch.where(fit_ok, status, _FIT)
    status = torch.where(colour_ok, status, _COLOUR)
    status = torch.where(allowed, status, _COUNT)
    return torch.where(count == 0, _BLANK, status)


def _chunked(images: Tensor, slots: int, sizes: tuple[int, ...], config: DecoderConfig) -> dict:
    parts = [_decode(chunk, slots, sizes, config) for chunk in images.split(_CHUNK)]
    return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}


def decode_shapes(images: Tensor, config: DecoderConfig = DecoderConfig()) -> ShapesDecoding:
    """Decode ``shapes`` images ``[N, 3, R, R]``: one clean object each, and which.

    Example:
        >>> from conceptalg.data.shapes import render
        >>> d = decode_shapes(render("triangle", "cyan", "small", 0.3, 0.6)[None])
        >>> d.valid.tolist(), d.labels["shape"].tolist(), (d.centres * 100).round().tolist()
        ([True], [2], [[30.0, 60.0]])
    """
    out = _chunked(images, 1, tuple(range(len(SIZES))), config)
    clean = (out["colour_error"][:, 0] <= config.colour_tolerance)
    status = _status(out["count"], clean, out["error"][:, 0] <= config.fit_tolerance,
                     out["noise"], out["count"] == 1, config)
    return ShapesDecoding(valid=status == _OK, status=status,
                          labels={"shape": out["shape"][:, 0], "color": out["color"][:, 0],
                                  "size": out["size"][:, 0]},
                          centres=out["centre"][:, 0], error=out["error"][:, 0])


def decode_scenes(images: Tensor, max_objects: int = MAX_OBJECTS,
                  config: DecoderConfig = DecoderConfig(),
                  sizes: tuple[str, ...] = (SCENE_SIZE,)) -> ScenesDecoding:
    """Decode ``scenes`` images ``[N, 3, R, R]``: the objects (centres, shapes, colours) and
    whether the image is a valid scene of 1..``max_objects`` clean objects of ``sizes``.

    Example:
        >>> from conceptalg.data.scenes import ScenesDataset
        >>> data = ScenesDataset(8, seed=0)
        >>> d = decode_scenes(data.images)
        >>> bool(d.valid.all()), bool((d.counts == data.counts).all())
        (True, True)
    """
    codes = tuple(SIZES.index(s) for s in sizes)
    out = _chunked(images, max_objects, codes, config)
    mask = out["mask"]
    colour_ok = out["colour_error"] <= config.colour_tolerance                 # [N, K]
    fit_ok = out["error"] <= config.fit_tolerance
    clean = mask & colour_ok & fit_ok
    status = _status(out["count"], (colour_ok | ~mask).all(1), (fit_ok | ~mask).all(1),
                     out["noise"], (out["count"] >= 1) & (out["count"] <= max_objects), config)
    return ScenesDecoding(valid=status == _OK, status=status, counts=out["count"], mask=mask,
                          centres=out["centre"], shapes=out["shape"], colors=out["color"],
                          sizes=out["size"], clean=clean, error=out["error"])

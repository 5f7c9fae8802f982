"""Factor views: declared invariances of concept heads (docs/design.md §6).

A *view* is the feature extractor a factor's heads read, built so that it cannot see what the
factor must not depend on. Composition extrapolates when each factor's energy depends only on
its own factor; a view makes that true by construction instead of hoping training finds it
(``bench/shortcut.py``: shape classifiers on an RGB trunk read held-out (shape, colour) pairs
at 0–1.3 %, colour-blind ones at 82 %). Built in:

- ``"identity"``: the whole image (the plain conv trunk; the MLP trunk for vectors);
- ``"colour-blind"``: one filter bank applied to every colour channel on its own, then the
  maximum over channels — invariant to any permutation of the channels, so blind to which
  colour an object has (for shape and size);
- ``"shape-blind"``: features of each pixel alone (1×1 convolutions), then pooling over pixels
  (mean and an attention-weighted mean) — invariant to any permutation of the pixels, so blind
  to arrangement (for colour);
- any ``nn.Module`` mapping ``x[B, ...]`` to features ``[B, F]`` (saved by its import path and
  rebuilt with no arguments, so it must be a class importable by that path).

Every view trunk maps ``x`` to ``h[B, F]`` (``out_features``) and accepts optional per-block
FiLM conditions (``film_sizes``; a noise level or a concept embedding), like the backbones.

Example:
    >>> views = normalise_views({"shape": "colour-blind", "color": "shape-blind"},
    ...                         {"shape": ["circle", "square"], "color": ["red", "green"]})
    >>> views
    {'shape': 'colour-blind', 'color': 'shape-blind'}
    >>> trunk = build_view_trunk("shape-blind", (3, 8, 8), width=16)
    >>> trunk(torch.rand(2, 3, 8, 8)).shape
    torch.Size([2, 64])
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .backbones import ConvTrunk, MLPTrunk, _film, _maybe_sn

__all__ = ["VIEWS", "VIEW_ALIASES", "PixelTrunk", "build_view_trunk", "normalise_views",
           "parse_views", "view_name", "resolve_view_module"]

#: the built-in views
VIEWS = ("identity", "colour-blind", "shape-blind")
#: other spellings accepted for them
VIEW_ALIASES = {"color-blind": "colour-blind", "colourblind": "colour-blind",
                "colorblind": "colour-blind", "shapeblind": "shape-blind", "rgb": "identity",
                "none": "identity"}
_MODULE = "module:"


class PixelTrunk(nn.Module):
    """The shape-blind view: ``x[B, C, H, W] -> h[B, 2F]``, per-pixel features (1×1
    convolutions, FiLM-conditioned) pooled by a mean and an attention-weighted mean over pixels.
    Any permutation of the pixels gives the same features.

    Example:
        >>> trunk = PixelTrunk(3, width=8)
        >>> x = torch.rand(2, 3, 4, 4)
        >>> shuffled = x.flatten(2)[:, :, torch.randperm(16)].reshape(2, 3, 4, 4)
        >>> torch.allclose(trunk(x), trunk(shuffled), atol=1e-6)
        True
    """

    def __init__(self, in_channels: int = 3, width: int = 32, blocks: Sequence[int] = (1, 2, 2),
                 spectral_norm: bool = False) -> None:
        super().__init__()
        channels = [width * m for m in blocks]
        sizes = [int(in_channels), *channels]
        self.layers = nn.ModuleList(_maybe_sn(nn.Conv2d(a, b, 1), spectral_norm)
                                    for a, b in zip(sizes[:-1], sizes[1:]))
        self.attention = nn.Conv2d(channels[-1], 1, 1)
        self.out_features = 2 * channels[-1]
        self.film_sizes = [2 * c for c in channels]

    def forward(self, x: torch.Tensor, conditions: Sequence[torch.Tensor] | None = None):
        h = x
        for i, layer in enumerate(self.layers):
            h = nn.functional.silu(_film(layer(h), conditions[i] if conditions else None))
        weights = torch.softmax(self.attention(h).flatten(2), dim=2)      # [B, 1, H·W]
        flat = h.flatten(2)                                               # [B, F, H·W]
        return torch.cat([flat.mean(2), (flat * weights).sum(2)], dim=1)  # [B, 2F]


def view_name(view: str | nn.Module) -> str:
    """The name a view is recorded by: a built-in name, or ``"module:pkg.mod.Class"``.

    Example:
        >>> view_name("color-blind"), view_name(nn.Flatten())
        ('colour-blind', 'module:torch.nn.modules.flatten.Flatten')
    """
    if isinstance(view, nn.Module):
        cls = type(view)
        return f"{_MODULE}{cls.__module__}.{cls.__qualname__}"
    if not isinstance(view, str):
        raise ValueError(f"a view is a name ({', '.join(VIEWS)}) or an nn.Module, got "
                         f"{type(view).__name__}")
    name = VIEW_ALIASES.get(view.strip().lower(), view.strip().lower())
    if name in VIEWS:
        return name
    if view.startswith(_MODULE):
        return view
    raise ValueError(f"unknown view {view!r}; the built-in views are {', '.join(VIEWS)} "
                     f"(or pass an nn.Module)")


def normalise_views(views: Mapping[str, Any] | None,
                    factors: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """``{factor: view name}`` checked against the model's factors; ``identity`` entries are
    dropped (the default). Raises :class:`ValueError` naming an unknown factor or view."""
    out = {}
    for factor, view in dict(views or {}).items():
        if factor not in factors:
            raise ValueError(f"views name {factor!r}, which is not a factor of the model; its "
                             f"factors are {sorted(factors)}")
        name = view_name(view)
        if name != "identity":
            out[str(factor)] = name
    return out


def parse_views(text: str) -> dict[str, str]:
    """The CLI's ``--views shape=colour-blind,color=shape-blind`` as a dict.

    Example:
        >>> parse_views("shape=colour-blind, size=colour-blind,color=shape-blind")
        {'shape': 'colour-blind', 'size': 'colour-blind', 'color': 'shape-blind'}
    """
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        factor, sep, view = item.partition("=")
        if not sep or not factor.strip() or not view.strip():
            raise ValueError(f"--views takes FACTOR=VIEW pairs separated by commas "
                             f"(e.g. shape=colour-blind,color=shape-blind); got {item!r}")
        out[factor.strip()] = view_name(view.strip())
    return out


def resolve_view_module(name: str) -> nn.Module:
    """Rebuild a user view recorded as ``"module:pkg.mod.Class"`` (its class called with no
    arguments; the weights come from the checkpoint)."""
    path = name[len(_MODULE):]
    module, _, qualname = path.rpartition(".")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj()
    except Exception as exc:
        raise ValueError(f"cannot rebuild the view {path!r}: {exc}. A user view must be a "
                         f"class importable by that path that builds with no arguments") from None


def build_view_trunk(view: str | nn.Module, sample_shape: Sequence[int], **options) -> nn.Module:
    """The trunk of a view: ``x[B, ...] -> h[B, F]`` with ``out_features`` and ``film_sizes``.
    ``options`` go to the built-in trunk (``width``, ``blocks``, ``spectral_norm``; ``hidden``
    for vectors). A user module is used as it is (it takes no FiLM conditions)."""
    shape = tuple(int(s) for s in sample_shape)
    if isinstance(view, nn.Module):
        return _UserView(view, shape)
    name = view_name(view)
    if name.startswith(_MODULE):
        return _UserView(resolve_view_module(name), shape)
    if len(shape) != 3:
        if name != "identity":
            raise ValueError(f"the {name} view needs images [C, H, W]; samples are {shape}")
        dim = 1
        for s in shape:
            dim *= s
        return MLPTrunk(dim, **{k: v for k, v in options.items()
                                if k in ("hidden", "spectral_norm")})
    conv_options = {k: v for k, v in options.items()
                    if k in ("width", "blocks", "spectral_norm")}
    if name == "shape-blind":
        return PixelTrunk(shape[0], **conv_options)
    return ConvTrunk(shape[0], stem="colour-blind" if name == "colour-blind" else "rgb",
                     **conv_options)


class _UserView(nn.Module):
    """A user's view module, flattened to ``[B, F]``; FiLM conditions cannot reach inside it."""

    def __init__(self, module: nn.Module, sample_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.module = module
        with torch.no_grad():
            probe = module(torch.zeros(2, *sample_shape))
        self.out_features = int(probe.flatten(1).shape[1])
        self.film_sizes: list[int] = []

    def forward(self, x: torch.Tensor, conditions: Sequence[torch.Tensor] | None = None):
        return self.module(x).flatten(1)

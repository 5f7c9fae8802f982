"""`ModelConfig`: everything needed to rebuild a trained model, saved with its checkpoints.

The configuration is a dataclass written as JSON (:meth:`ModelConfig.to_dict`,
:meth:`ModelConfig.from_dict`) and checked at construction: head kind, objective and
parameterisation, views, noise range, composition defaults. It sits below the modules that
build networks from it (:mod:`.model`, :mod:`.view_trunks`, :mod:`.diffusion`), which import it
and never the other way round (docs/design.md §6).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..sampling.settings import check_int

__all__ = ["ModelConfig", "BASE", "HEAD_KINDS", "OBJECTIVES", "PARAMETERIZATIONS",
           "COMPOSITION_KEYS"]

BASE = "__base__"
HEAD_KINDS = ("linear", "film", "classifier")
OBJECTIVES = ("cd", "dsm")
PARAMETERIZATIONS = ("energy", "score")

#: what a model's ``composition`` may record: the defaults of ``compose`` for it
COMPOSITION_KEYS = ("semantics", "guidance_scale", "negation_scale", "negation_sigmas")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a :class:`~conceptalg.models.ConceptModel` (saved in
    checkpoints as JSON).

    ``factors`` maps each factor to its values (concept ``factor=value``); ``parametric``
    maps parametric concept names to their number of arguments (``{"at": 2}``; FiLM only).
    ``temperature`` is the temperature ``T = σ²/(2λ)`` of the Langevin dynamics the energies
    were trained with; the library exposes ``E / T`` so that samplers see ``T = 1``.
    ``sampler_defaults`` are keyword defaults for :func:`conceptalg.sample`. ``init_bank``
    is the number of stored starting images (model samples kept with the weights, e.g. from
    the base replay buffer by :func:`conceptalg.training.export_model`); when it is > 0,
    chains start from them by default instead of from uniform noise, as in training.
    ``colour_blind`` names factors whose heads read a second, colour-blind trunk (conv
    backbone, linear or classifier heads; see :class:`~conceptalg.models.backbones.ConvTrunk`):
    a declared invariance, for factors such as shape whose values were seen with few colours.

    ``objective`` is the training objective the network is built for: ``"cd"`` (contrastive
    divergence, a :class:`~conceptalg.models.ConceptModel`) or ``"dsm"`` (denoising score
    matching, a noise-conditioned :class:`~conceptalg.models.diffusion.DiffusionModel` with
    FiLM concept conditioning, backbone ``"unet"`` or ``"mlp"``). For ``"dsm"``, ``parameterization`` is
    ``"energy"`` (scalar energies: every semantics and sampler) or ``"score"`` (scores only,
    cheaper), and ``noise`` holds ``sigma_data``, ``mean``, ``sigma_min``, ``sigma_max``.
    ``composition`` records the default semantics and guidance scale of ``compose``
    (``{"semantics": "guidance", "guidance_scale": 4.0}``); empty means the library's default.

    ``classifiers`` (dsm, film heads): the model also carries noise-aware classifiers of its
    factors, each reading its view (``views``), which :func:`conceptalg.infer` reads in one
    pass. ``object_factors`` (dsm, classifier heads with a place concept such as ``at``): the
    properties of the object at a place (``{"shape": [...], "color": [...]}``), read by window
    classifiers around the place — what a binding ``at(x, y)[red & circle]`` asks about
    (docs/design.md §4).
    """

    sample_shape: tuple[int, ...]
    factors: dict[str, list[str]] = field(default_factory=dict)
    parametric: dict[str, int] = field(default_factory=dict)
    heads: str = "linear"
    backbone: str = "conv"
    backbone_options: dict[str, Any] = field(default_factory=dict)
    embedding_dim: int = 64
    bounds: tuple[float, float] | None = (0.0, 1.0)
    temperature: float = 1.0
    sampler_defaults: dict[str, Any] = field(default_factory=dict)
    init_bank: int = 0
    colour_blind: tuple[str, ...] = ()
    objective: str = "cd"
    views: dict[str, str] = field(default_factory=dict)
    parameterization: str = "energy"
    noise: dict[str, Any] = field(default_factory=dict)
    composition: dict[str, Any] = field(default_factory=dict)
    classifiers: bool = False
    object_factors: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sample_shape = tuple(int(s) for s in self.sample_shape)
        self.factors = {str(f): [str(v) for v in values] for f, values in self.factors.items()}
        self.object_factors = {str(f): [str(v) for v in values]
                               for f, values in self.object_factors.items()}
        self.parametric = {str(k): int(v) for k, v in self.parametric.items()}
        # JSON gives lists back: keep sequences as tuples so a saved config compares equal
        self.backbone_options = {k: tuple(v) if isinstance(v, list) else v
                                 for k, v in self.backbone_options.items()}
        if self.bounds is not None:
            self.bounds = (float(self.bounds[0]), float(self.bounds[1]))
        if self.heads not in HEAD_KINDS:
            raise ValueError(f"heads must be one of {HEAD_KINDS}, got {self.heads!r}")
        if self.parametric and self.heads != "film" and not (
                self.heads == "classifier" and self.objective == "dsm"):
            raise ValueError(f"parametric concepts {sorted(self.parametric)} need heads='film' "
                             f"(a linear head, or a classifier head of contrastive divergence, "
                             f"cannot take arguments)")
        if not self.factors and not self.parametric:
            raise ValueError("a model needs at least one factor or parametric concept")
        for f, values in self.factors.items():
            if len(set(values)) != len(values) or not values:
                raise ValueError(f"factor {f!r} needs distinct values, got {values}")
            if self.heads == "classifier" and len(values) < 2:
                raise ValueError(f"a classifier factor needs ≥ 2 values; {f!r} has {values}")
        check_int("init_bank", self.init_bank, 0)
        self._check_objects()
        self._check_views()
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be finite and > 0, got {self.temperature}")
        self._check_objective()

    def _check_objects(self) -> None:
        """Object factors: a guided dsm model with a place concept, values distinct from each
        other and from the image's own factor values (bare names must stay unique)."""
        if self.classifiers and not (self.objective == "dsm" and self.heads == "film"):
            raise ValueError("classifiers=True adds factor classifiers to a dsm model with film "
                             "heads; a model with heads='classifier' has them already")
        if not self.object_factors:
            return
        if self.objective != "dsm" or self.heads != "classifier" or not self.parametric:
            raise ValueError("object_factors (properties of the object at a place) need "
                             "objective='dsm', heads='classifier' and a place concept such as "
                             "at(x, y)")
        taken = {v for values in self.factors.values() for v in values}
        for f, values in self.object_factors.items():
            if len(values) < 2 or len(set(values)) != len(values):
                raise ValueError(f"object factor {f!r} needs ≥ 2 distinct values, got {values}")
            if f in self.factors or set(values) & taken:
                raise ValueError(f"object factor {f!r} repeats a factor or value of the image "
                                 f"({sorted(set(values) & taken) or f}); names must be unique")
            taken |= set(values)

    def _check_views(self) -> None:
        """``views`` and its alias ``colour_blind`` as one consistent pair: every colour-blind
        factor is in ``views``, and ``colour_blind`` lists the factors whose view is it."""
        from .views import normalise_views

        if isinstance(self.colour_blind, str):
            self.colour_blind = (self.colour_blind,)
        blind = tuple(str(f) for f in self.colour_blind)
        factors = {**self.factors, **self.object_factors}
        unknown = [f for f in blind if f not in factors]
        if unknown:
            raise ValueError(f"colour_blind names {unknown}, which are not factors of the "
                             f"model; its factors are {sorted(factors)}")
        views = {f: "colour-blind" for f in blind}
        views.update(normalise_views(self.views, factors))
        self.views = views
        self.colour_blind = tuple(f for f, v in views.items() if v == "colour-blind")
        if not views:
            return
        if self.objective == "dsm" and self.heads != "classifier" and not self.classifiers:
            raise ValueError(f"views with objective='dsm' need classifiers (heads='classifier', "
                             f"or classifiers=True beside film heads: a denoiser conditioned "
                             f"on a concept must read all of x); got heads={self.heads!r}")
        if self.objective == "cd" and self.backbone != "conv":
            raise ValueError(f"views need the conv backbone (images), not {self.backbone!r}")

    def view_of(self, factor: str) -> str:
        """The view a factor's heads read (``"identity"`` unless declared)."""
        return self.views.get(factor, "identity")

    def _check_objective(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got "
                             f"{self.parameterization!r}")
        composition = dict(self.composition)
        unknown = set(composition) - set(COMPOSITION_KEYS)
        if unknown:
            raise ValueError(f"composition takes {', '.join(map(repr, COMPOSITION_KEYS))}, got "
                             f"{sorted(unknown)}")
        self.composition = composition
        if self.objective == "cd":
            if self.parameterization != "energy":
                raise ValueError("parameterization='score' needs objective='dsm' (contrastive "
                                 "divergence trains energies)")
            return
        if self.heads not in ("film", "classifier"):
            raise ValueError(f"objective='dsm' conditions one network on the concept (heads="
                             f"'film') or guides an unconditional one with noise-aware "
                             f"classifiers (heads='classifier'); got heads={self.heads!r}")
        if self.heads == "classifier" and any(n != 2 for n in self.parametric.values()):
            raise ValueError(f"classifier heads of parametric concepts read a window around a "
                             f"position (two arguments); got {self.parametric}")
        if self.backbone not in ("unet", "mlp"):
            raise ValueError(f"objective='dsm' needs backbone 'unet' (images) or 'mlp' "
                             f"(vectors), got {self.backbone!r}")
        from ..edm import SIGMA_MAX, SIGMA_MIN

        noise = {"sigma_data": 0.5, "mean": 0.0, "sigma_min": SIGMA_MIN, "sigma_max": SIGMA_MAX,
                 **self.noise}
        for key in ("sigma_data", "sigma_min", "sigma_max"):
            value = float(noise[key])
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"noise[{key!r}] must be finite and > 0, got {noise[key]!r}")
            noise[key] = value
        if noise["sigma_min"] >= noise["sigma_max"]:
            raise ValueError(f"noise: sigma_min {noise['sigma_min']} must be < sigma_max "
                             f"{noise['sigma_max']}")
        mean = noise["mean"]
        noise["mean"] = float(mean) if isinstance(mean, (int, float)) else \
            [float(m) for m in mean]
        self.noise = noise

    @property
    def concept_names(self) -> list[str]:
        """Head names: ``factor=value`` for every factor value, then parametric names."""
        return [f"{f}={v}" for f, values in self.factors.items() for v in values] + \
            list(self.parametric)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict. ``factors`` and ``parametric`` are lists of ``[name, value]``
        pairs: their order fixes the head indices, and JSON writers may sort object keys."""
        out = dataclasses.asdict(self)
        out["factors"] = [[f, list(values)] for f, values in self.factors.items()]
        out["parametric"] = [[name, n] for name, n in self.parametric.items()]
        out["object_factors"] = [[f, list(v)] for f, v in self.object_factors.items()]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}")
        data = dict(data)
        for key in ("factors", "parametric", "object_factors"):
            if isinstance(data.get(key), dict) and len(data[key]) > 1:
                raise ValueError(f"model config {key!r} is a JSON object, whose order is not "
                                 "guaranteed; it must be a list of [name, value] pairs")
            if key in data:
                data[key] = dict(data[key])
        return cls(**data)

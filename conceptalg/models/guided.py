"""Classifier guidance: an unconditional diffusion base and noise-aware classifiers
(docs/design.md §6).

A :class:`GuidedDiffusionModel` (``heads="classifier"``) has one unconditional denoiser ``D_0``
(the base, :class:`~conceptalg.models.diffusion.DiffusionModel`'s network with a single
concept row) and, as its concept heads, classifiers of noisy data:

- a softmax classifier ``p(v | view_f(x̃), σ)`` per factor ``f``
  (:class:`~conceptalg.models.noisy_classifier.NoisyClassifiers`);
- a window classifier ``P(c(p) | window(x̃, p), σ)`` per parametric concept of a place
  (``at(x, y)``: :class:`~conceptalg.models.noisy_classifier.WindowClassifier`);
- with ``object_factors``, classifiers of the properties of *the object at* a place
  (:class:`~conceptalg.models.noisy_classifier.ObjectClassifiers`): the heads of a binding
  ``at(p)[red & circle]``, named ``"at[color=red]"`` (:func:`bound_head`).

Concept ``c`` has the energy ``E_0(x, σ) − log p(c | x, σ)`` (Bayes' rule for the noisy law):
the library reads its concept columns as log-probabilities (kind ``"log_prob"``), composed under
``logic``. :meth:`GuidedDiffusionModel.over_base` starts one over a trained film model's base;
:func:`with_classifiers_of` puts trained factor classifiers beside a film model's own heads (what
:func:`conceptalg.infer` reads in one pass).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
from torch import Tensor, nn

from .diffusion import DiffusionModel
from .noisy_classifier import WINDOW_DEFAULTS, ObjectClassifiers, WindowClassifier
from .views import view_name

__all__ = ["GuidedDiffusionModel", "bound_head", "parse_bound_head", "with_classifiers_of"]


def bound_head(place: str, factor: str, value: str) -> str:
    """The head name of "the object at ``place`` has ``factor=value``".

    Example:
        >>> bound_head("at", "color", "red"), parse_bound_head("at[color=red]")
        ('at[color=red]', ('at', 'color', 'red'))
    """
    return f"{place}[{factor}={value}]"


def parse_bound_head(name: str) -> tuple[str, str, str] | None:
    """``(place, factor, value)`` of a :func:`bound_head` name, else ``None``."""
    place, bracket, rest = name.partition("[")
    if not bracket or not rest.endswith("]") or "=" not in rest:
        return None
    factor, _, value = rest[:-1].partition("=")
    return place, factor, value


class GuidedDiffusionModel(DiffusionModel):
    """A diffusion base guided by noise-aware classifiers (module docstring); built from a
    :class:`~conceptalg.models.ModelConfig` with ``objective="dsm"``, ``heads="classifier"``.

    Example:
        >>> from conceptalg.models import ModelConfig
        >>> cfg = ModelConfig(sample_shape=(3, 16, 16), parametric={"at": 2},
        ...                   object_factors={"color": ["red", "blue"]}, heads="classifier",
        ...                   objective="dsm", backbone="unet", backbone_options={"channels": (8,)},
        ...                   views={"color": "shape-blind"})
        >>> model = GuidedDiffusionModel(cfg)
        >>> model.bound_heads
        ['at[color=red]', 'at[color=blue]']
        >>> x, point = torch.rand(2, 3, 16, 16), torch.tensor([0.3, 0.6])
        >>> model.concept_energies(x, ["at", "at[color=red]"], [point, point], sigma=0.5).shape
        torch.Size([2, 2])
    """

    guided = True

    def __init__(self, config, view_modules: dict[str, nn.Module] | None = None) -> None:
        super().__init__(config, view_modules)
        d, channels = config.embedding_dim, config.sample_shape[0]
        options = dict(config.backbone_options)
        window = {**WINDOW_DEFAULTS, **dict(options.get("window") or {})}
        self.local_heads = nn.ModuleDict({name: WindowClassifier(channels, dim=d, **window)
                                          for name in config.parametric})
        if config.object_factors:
            self.object_heads = nn.ModuleDict({
                name: ObjectClassifiers(channels, config.object_factors, config.views, dim=d,
                                        options=options.get("object"),
                                        view_modules=view_modules)
                for name in config.parametric})

    @property
    def bound_heads(self) -> list[str]:
        """The heads of bindings: ``place[factor=value]`` for every place and object value."""
        return [bound_head(p, f, v) for p in getattr(self, "object_heads", {})
                for f, values in self.config.object_factors.items() for v in values]

    @classmethod
    def over_base(cls, model: DiffusionModel, views: dict | None = None,
                  options: dict | None = None,
                  object_factors: dict | None = None) -> "GuidedDiffusionModel":
        """A guided model whose base is ``model``'s base (a film model), weight for weight,
        with fresh noise-aware classifiers over ``views`` (train them with
        ``DSMConfig(freeze_base=True)``): classifier heads added to a trained diffusion model.
        ``object_factors`` adds object heads for bindings (the data's
        :attr:`~conceptalg.training.ConceptData.object_factors`).

        Example:
            >>> from conceptalg.models import ModelConfig
            >>> cfg = ModelConfig(sample_shape=(3, 8, 8), factors={"shape": ["a", "b"]},
            ...                   heads="film", objective="dsm", backbone="unet",
            ...                   backbone_options={"channels": (8,)})
            >>> guided = GuidedDiffusionModel.over_base(DiffusionModel(cfg),
            ...                                         {"shape": "colour-blind"}, {"width": 4})
            >>> guided.config.heads, guided.config.views
            ('classifier', {'shape': 'colour-blind'})
        """
        if model.guided:
            raise ValueError("this model has classifier heads already")
        cfg = model.config
        backbone = dict(cfg.backbone_options)
        if options is not None:
            backbone["classifier"] = dict(options)
        modules = {f: v for f, v in dict(views or {}).items() if isinstance(v, nn.Module)}
        config = dataclasses.replace(
            cfg, heads="classifier", backbone_options=backbone, classifiers=False,
            object_factors=dict(object_factors or cfg.object_factors),
            views={f: view_name(v) for f, v in dict(views or {}).items()},
            composition={"semantics": "logic", "guidance_scale": 1.0})
        guided = cls(config, view_modules=modules).to(model.mean.device)
        guided.net.load_state_dict(model.net.state_dict())
        guided.noise_embedding.load_state_dict(model.noise_embedding.state_dict())
        with torch.no_grad():
            guided.embedding.weight[0] = model.embedding.weight[model._base_row]
        return guided

    # --- the classifiers ---------------------------------------------------------------------
    def local_logits(self, x: Tensor, name: str, point: Tensor, *,
                     sigma: Tensor | float | None = None) -> Tensor:
        """``logit P(name(point) | window(x, point), σ)`` ``[B]`` of a parametric concept
        (``point[B, 2]``, or ``[2]`` for all): its window classifier."""
        if name not in self.local_heads:
            raise KeyError(f"{type(self).__name__} has no window head {name!r}; parametric "
                           f"concepts: {list(self.config.parametric)}")
        u, s = self._classifier_input(x, sigma)
        point = point.to(x.dtype).expand(x.shape[0], 2)
        return self.local_heads[name](u, point, self.classifier_noise(s))

    def object_logits(self, x: Tensor, place: str, point: Tensor,
                      factors: Sequence[str] | None = None, *,
                      sigma: Tensor | float | None = None) -> dict[str, Tensor]:
        """Logits ``{factor: [B, V]}`` of the properties of the object at ``point`` (``[B, 2]``
        or ``[2]``) of ``place``, read from a window around it (``object_factors``)."""
        heads = getattr(self, "object_heads", {})
        if place not in heads:
            raise KeyError(f"{type(self).__name__} has no object heads for {place!r}: "
                           + ("it was trained without object properties (object_factors)"
                              if not heads else f"places: {list(heads)}"))
        factors = list(self.config.object_factors) if factors is None else list(factors)
        u, s = self._classifier_input(x, sigma)
        point = point.to(x.dtype).expand(x.shape[0], 2)
        return heads[place](u, point, factors, s, self.classifier_noise(s))

    def _class_log_probs(self, x: Tensor, heads: Sequence[str], sigma,
                         args: Sequence[Tensor | None] | None = None) -> list[Tensor | None]:
        """``log p(c | x, σ)`` ``[B]`` for each concept head (one classifier pass per factor;
        a place's window classifier, or its object classifiers, at its arguments), ``None``
        for the base."""
        args = list(args) if args is not None else [None] * len(heads)
        factors = [self._value(h)[0] for h in heads
                   if h != self.base_name and h not in self.config.parametric
                   and parse_bound_head(h) is None]
        log_probs = self.factor_log_probs(x, list(dict.fromkeys(factors)), sigma=sigma) \
            if factors else {}
        out: list[Tensor | None] = []
        for name, a in zip(heads, args):
            bound = parse_bound_head(name)
            if name == self.base_name:
                out.append(None)
            elif name in self.config.parametric or bound is not None:
                if a is None:
                    raise ValueError(f"head {name!r} needs the arguments of its place")
                if bound is None:
                    logit = self.local_logits(x, name, a, sigma=sigma)
                    out.append(nn.functional.logsigmoid(logit))
                    continue
                place, f, value = bound
                logits = self.object_logits(x, place, a, [f], sigma=sigma)[f]
                j = self.config.object_factors[f].index(value)
                out.append(torch.log_softmax(logits, dim=1)[:, j])
            else:
                f, j = self._value(name)
                out.append(log_probs[f][:, j])
        return out

    # --- the concept-library protocol -------------------------------------------------------
    def concept_energies(self, x: Tensor, heads: Sequence[str],
                         args: Sequence[Tensor | None] | None = None, *,
                         sigma: Tensor | float | None = None) -> Tensor:
        """The concept columns ``log p(c | view(x), σ)`` ``[B, K]`` (classifier heads:
        ``E_c = E_0 − log p``); the base column, ``E_0``, needs the energy form."""
        log_ps = self._class_log_probs(x, heads, sigma, args)
        base = self.concept_energies_base(x, sigma) if None in log_ps else None
        return torch.stack([base if c is None else c for c in log_ps], dim=1)

    def concept_scores(self, x: Tensor, heads: Sequence[str],
                       args: Sequence[Tensor | None] | None = None, *,
                       sigma: Tensor | float | None = None) -> Tensor:
        """Scores ``[B, K, *shape]``: the base score plus ``∇_x log p(c | view(x), σ)``."""
        base = super().concept_scores(x, [self.base_name], sigma=sigma)[:, 0]
        if all(h == self.base_name for h in heads):
            return base[:, None].expand(-1, len(heads), *base.shape[1:])
        columns = []
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            for log_p in self._class_log_probs(xg, heads, sigma, args):
                if log_p is None:
                    columns.append(base)
                    continue
                (g,) = torch.autograd.grad(log_p.sum(), xg, retain_graph=True)
                columns.append(base + g)
        return torch.stack(columns, dim=1)

    def as_concept_library(self):
        """The concept library (:meth:`DiffusionModel.as_concept_library`), with the properties
        of the object at each place (``object_factors``) for bindings."""
        lib = super().as_concept_library()
        for place in getattr(self, "object_heads", {}):
            lib.add_objects(place, self, {f"{f}={v}": bound_head(place, f, v)
                                          for f, values in self.config.object_factors.items()
                                          for v in values})
        return lib


def with_classifiers_of(model: DiffusionModel, guided: GuidedDiffusionModel) -> DiffusionModel:
    """``model`` (film heads) with ``guided``'s trained factor classifiers beside its own heads
    (``config.classifiers``): the classifiers were trained over the same base (``guided`` was
    made by :meth:`GuidedDiffusionModel.over_base` from ``model``), so they read what
    ``model`` draws. Nothing else of ``model`` changes: it samples exactly as before, and
    :func:`conceptalg.infer` reads its classifiers in one pass.

    Example:
        >>> from conceptalg.models import ModelConfig
        >>> cfg = ModelConfig(sample_shape=(3, 8, 8), factors={"shape": ["a", "b"]},
        ...                   heads="film", objective="dsm", backbone="unet",
        ...                   backbone_options={"channels": (8,)})
        >>> film = DiffusionModel(cfg)
        >>> guided = GuidedDiffusionModel.over_base(film, {"shape": "colour-blind"}, {"width": 4})
        >>> both = with_classifiers_of(film, guided)
        >>> both.config.heads, both.config.classifiers, both.has_classifiers
        ('film', True, True)
    """
    if model.guided or not guided.guided:
        raise ValueError("with_classifiers_of puts a guided model's classifiers beside a film "
                         "model's heads; give (film model, guided model)")
    if model.config.factors != guided.config.factors:
        raise ValueError(f"the classifiers read factors {guided.config.factors}, the model has "
                         f"{model.config.factors}")
    same = all(torch.equal(a, b) for a, b in zip(model.net.state_dict().values(),
                                                 guided.net.state_dict().values()))
    if not same:
        raise ValueError("the classifiers were trained over another base: train them over "
                         "this model (conceptalg train --heads classifier --base MODEL)")
    options = dict(model.config.backbone_options)
    if "classifier" in guided.config.backbone_options:
        options["classifier"] = guided.config.backbone_options["classifier"]
    config = dataclasses.replace(model.config, classifiers=True, views=dict(guided.config.views),
                                 backbone_options=options)
    out = DiffusionModel(config).to(model.mean.device)
    missing, unexpected = out.load_state_dict(model.state_dict(), strict=False)
    if unexpected or not all(k.startswith(("classifiers.", "classifier_noise.")) for k in missing):
        raise RuntimeError(f"the model's weights do not fit its own layout with classifiers: "
                           f"missing {missing}, unexpected {unexpected}")
    out.classifiers.load_state_dict(guided.classifiers.state_dict())
    out.classifier_noise.load_state_dict(guided.classifier_noise.state_dict())
    return out.eval()

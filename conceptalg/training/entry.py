"""``conceptalg.train``: the one-call entry point of training, and the default objective by
kind of data."""

from __future__ import annotations

from typing import Any

from ..models.model import ConceptModel
from .cd import Trainer, default_train_config
from .data import ConceptData, builtin_data
from .dsm import DSMTrainer, default_dsm_config

__all__ = ["train", "default_objective", "OBJECTIVES"]

#: training objectives: contrastive divergence, denoising score matching
OBJECTIVES = ("cd", "dsm")


def default_objective(sample_shape) -> tuple[str, str]:
    """The ``(objective, parameterization)`` a new model gets by default: images train by
    denoising score matching of scores (the recipe of the shipped image models), vectors by
    contrastive divergence of energies.

    Example:
        >>> default_objective((3, 32, 32)), default_objective((2,))
        (('dsm', 'score'), ('cd', 'energy'))
    """
    return ("dsm", "score") if len(tuple(sample_shape)) == 3 else ("cd", "energy")


def train(data, labels=None, *, objective: str | None = None, heads: str | None = None,
          steps: int | None = None, model: ConceptModel | None = None, device=None,
          progress: bool = False, colour_blind: tuple[str, ...] = (),
          views: dict[str, Any] | None = None,
          parameterization: str | None = None, **config: Any) -> ConceptModel:
    """Train concept heads and return the model (a concept library ``compose`` accepts).

    ``data`` is a built-in dataset name (``"toy2d"``, ``"shapes"``, ``"scenes"``,
    ``"digits"``), a :class:`ConceptData`, or a tensor of samples with ``labels`` (a dict
    factor → value names, or one list of concept names). ``objective`` is ``"cd"``
    (contrastive divergence, :class:`Trainer`) or ``"dsm"`` (denoising score matching of
    noise-conditioned energies, :class:`DSMTrainer`; ``parameterization`` ``"energy"`` or
    ``"score"``; by default images train by ``"dsm"`` with ``"score"`` — the shipped image
    models' recipe — and vectors by ``"cd"``, see :func:`default_objective`; a dsm model of
    vectors defaults to ``"energy"``; other keywords are :class:`DSMConfig` fields, and the result is a
    :class:`~conceptalg.models.DiffusionModel`; ``heads`` ``"film"`` (default) or
    ``"classifier"``: an unconditional network guided by noise-aware classifiers). For
    ``"cd"``, ``heads`` is ``"linear"`` (default), ``"film"`` or ``"classifier"``; other
    keywords are :class:`TrainConfig` fields. ``views`` maps factors to the view their heads
    read (``"colour-blind"``, ``"shape-blind"``, ``"identity"`` or an ``nn.Module``;
    :mod:`conceptalg.models.views`); ``colour_blind`` is an alias for factors whose view is
    colour-blind.

    Example:
        >>> import torch, conceptalg
        >>> x = torch.cat([torch.randn(100, 2) - 2, torch.randn(100, 2) + 2]).clamp(-5, 5)
        >>> model = conceptalg.train(x, ["left"] * 100 + ["right"] * 100, steps=10,
        ...                          bounds=(-5.0, 5.0))
        >>> energy = conceptalg.compose("left & ~right", model)
    """
    bounds = config.pop("bounds", None)
    if isinstance(data, str):
        data = builtin_data(data, **({"n": config.pop("n")} if "n" in config else {}))
    elif not isinstance(data, ConceptData):
        if labels is None:
            raise ValueError("give labels for your samples (a dict factor -> values, or a list "
                             "of concept names)")
        data = ConceptData.from_labels(data, labels, bounds=bounds)
    if steps is not None:
        config["steps"] = steps
    if objective is None:
        objective, default_parameterization = default_objective(data.sample_shape)
        parameterization = parameterization or default_parameterization
    parameterization = parameterization or "energy"
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    views = {**{f: "colour-blind" for f in colour_blind}, **dict(views or {})}
    if objective == "dsm":
        dsm = DSMTrainer(data, model=model, config=default_dsm_config(data.sample_shape, **config),
                         parameterization=parameterization, device=device,
                         heads=heads or "film", views=views)
        dsm.fit(progress=progress)
        return dsm.model
    if parameterization != "energy":
        raise ValueError("parameterization='score' needs objective='dsm' (contrastive divergence "
                         "trains energies)")
    trainer = Trainer(data, model=model, config=default_train_config(data.sample_shape, **config),
                      heads=heads or "linear", device=device, views=views)
    trainer.fit(progress=progress)
    return trainer.model

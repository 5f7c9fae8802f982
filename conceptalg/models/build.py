"""One entry point from a saved config to its network, whichever objective built it."""

from __future__ import annotations

from torch import nn

from .diffusion import DiffusionModel
from .model import ConceptModel, ModelConfig

__all__ = ["build_model"]


def build_model(config: ModelConfig) -> nn.Module:
    """The network a config describes: a :class:`ConceptModel` (``objective="cd"``) or a
    :class:`~conceptalg.models.diffusion.DiffusionModel` (``objective="dsm"``).

    Example:
        >>> cfg = ModelConfig(sample_shape=(2,), factors={"side": ["left", "right"]},
        ...                   backbone="mlp", bounds=None)
        >>> type(build_model(cfg)).__name__
        'ConceptModel'
    """
    if config.objective == "dsm":
        return DiffusionModel(config)
    return ConceptModel(config)

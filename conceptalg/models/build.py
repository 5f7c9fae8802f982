"""One entry point from a saved config to its network, whichever objective built it."""

from __future__ import annotations

from torch import nn

from .diffusion import DiffusionModel
from .guided import GuidedDiffusionModel
from .model import ConceptModel, ModelConfig

__all__ = ["build_model"]


def build_model(config: ModelConfig, view_modules: dict[str, nn.Module] | None = None
                ) -> nn.Module:
    """The network a config describes: a :class:`ConceptModel` (``objective="cd"``), a
    :class:`~conceptalg.models.diffusion.DiffusionModel` (``objective="dsm"``) or, with
    classifier heads, a :class:`~conceptalg.models.guided.GuidedDiffusionModel`.

    Example:
        >>> cfg = ModelConfig(sample_shape=(2,), factors={"side": ["left", "right"]},
        ...                   backbone="mlp", bounds=None)
        >>> type(build_model(cfg)).__name__
        'ConceptModel'
    """
    if config.objective == "dsm":
        cls = GuidedDiffusionModel if config.heads == "classifier" else DiffusionModel
        return cls(config, view_modules=view_modules)
    return ConceptModel(config, view_modules=view_modules)

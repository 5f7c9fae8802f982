"""Models: backbones (MLP, conv ResNet), concept heads (linear, FiLM, classifier), ConceptModel,
and noise-conditioned diffusion-trained energies (DiffusionModel; guided by noise-aware
classifiers: GuidedDiffusionModel)."""

from .backbones import ConvTrunk, MLPTrunk, build_backbone
from .diffusion import DiffusionModel
from .guided import GuidedDiffusionModel
from .build import build_model
from .model import BASE, HEAD_KINDS, OBJECTIVES, PARAMETERIZATIONS, ConceptModel, ModelConfig

__all__ = ["ConceptModel", "DiffusionModel", "GuidedDiffusionModel", "ModelConfig", "build_model", "MLPTrunk",
           "ConvTrunk", "build_backbone", "BASE", "HEAD_KINDS", "OBJECTIVES",
           "PARAMETERIZATIONS"]

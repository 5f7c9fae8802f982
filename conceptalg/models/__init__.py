"""Models: backbones (MLP, conv ResNet), concept heads (linear, FiLM, classifier), ConceptModel."""

from .backbones import ConvTrunk, MLPTrunk, build_backbone
from .model import BASE, HEAD_KINDS, ConceptModel, ModelConfig

__all__ = ["ConceptModel", "ModelConfig", "MLPTrunk", "ConvTrunk", "build_backbone", "BASE",
           "HEAD_KINDS"]

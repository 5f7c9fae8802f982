"""Training: contrastive divergence, denoising score matching, classifier heads (JEM), data
adapters, checkpoints.

``conceptalg.train(data, ...)`` is the one-call entry point; :class:`Trainer` (contrastive
divergence) and :class:`DSMTrainer` (denoising score matching) give control over the loop
(resume, callbacks, new heads on a frozen trunk). Names load on first use, so reading a
checkpoint (:mod:`.checkpoint`, what ``conceptalg.load`` uses) imports no trainer.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "train": ".entry", "default_objective": ".entry", "OBJECTIVES": ".entry",
    "Trainer": ".cd", "TrainConfig": ".cd", "default_train_config": ".cd",
    "TrainingDiverged": "..errors",
    "ConceptData": ".data", "builtin_data": ".data", "BUILTIN_DATA": ".data",
    "DSMTrainer": ".dsm", "DSMConfig": ".dsm_config", "default_dsm_config": ".dsm_config",
    "export_model": ".export", "TrainingRun": ".run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

"""Export a training run as a small, shippable model: weights, config and a bank of start images.

A training checkpoint holds everything needed to resume (optimiser state, every replay buffer,
RNG states): about 130 MB for ``shapes``. A model for users needs only the weights and config,
plus, for image models trained from persistent chains, a few hundred of the model's own
samples to start chains from. Short-run EBMs sample well only from where their training chains
started (their replay buffers, not uniform noise; docs/references.md): so :func:`export_model`
keeps the newest ``init_bank`` samples of the *base* replay buffer (unconditional samples,
which favour no concept) in the model, and :func:`conceptalg.sample` starts from them by
default (``ConceptModel.init_samples``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, CompileError
from ..models.build import build_model
from ..models.model import COMPOSITION_KEYS, ConceptModel, ModelConfig
from ..sampling.settings import check_int, check_sampler_defaults
from .checkpoint import load_checkpoint, save_checkpoint

__all__ = ["export_model"]


_COMPOSITION_KEYS = COMPOSITION_KEYS


def export_model(run: str | os.PathLike, out: str | os.PathLike, *,
                 init_bank: int | None = None,
                 sampler_defaults: dict[str, Any] | None = None,
                 classifiers: str | os.PathLike | None = None) -> Path:
    """Write the model of ``run`` (a run directory or a checkpoint) to ``out`` as a one-
    checkpoint run directory without optimiser state or replay buffers, keeping the newest
    ``init_bank`` samples of the base replay buffer as the model's default chain starts
    (``0``: none; default 256 for contrastive-divergence models, 0 for denoising score matching,
    whose chains start from noise). ``sampler_defaults`` replaces entries of the model's
    defaults for :func:`conceptalg.sample` (e.g. longer chains than the training recipe's;
    ``None`` as a value removes an entry); its keys ``semantics`` and ``guidance_scale`` set
    the model's composition defaults instead (what ``compose(..., semantics=None)`` uses).
    ``classifiers`` names a run (or checkpoint) of noise-aware classifiers trained over this
    model's base (``conceptalg train --heads classifier --base MODEL``): the exported model
    carries them beside its own heads (:func:`conceptalg.models.guided.with_classifiers_of`),
    so :func:`conceptalg.infer` reads it in one pass per image; sampling is unchanged.
    Returns the checkpoint directory; ``conceptalg.load(out)`` reads it.

    Example:
        >>> path = export_model("runs/shapes", "models/shapes", init_bank=256)  # doctest: +SKIP
        >>> conceptalg.load("models/shapes").config.init_bank  # doctest: +SKIP
        256
    """
    ckpt = load_checkpoint(run)
    dsm = ckpt.model_config.objective == "dsm"
    if init_bank is None:
        init_bank = 0 if dsm else 256
    check_int("init_bank", init_bank, 0)
    if dsm and init_bank:
        raise ValueError("a denoising-score-matching model starts its chains from noise and "
                         "keeps no init bank; pass init_bank=0")
    defaults = dict(ckpt.model_config.sampler_defaults)
    composition = dict(ckpt.model_config.composition)
    for key, value in (sampler_defaults or {}).items():
        table = composition if key in _COMPOSITION_KEYS else defaults
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    check_sampler_defaults(defaults)
    _check_composition(composition)
    config = ModelConfig.from_dict({**ckpt.model_config.to_dict(), "init_bank": init_bank,
                                    "sampler_defaults": defaults,
                                    "composition": composition})
    model = build_model(config)
    weights = {k: v for k, v in ckpt.model.state_dict().items() if k != "init_bank"}
    model.load_state_dict(weights, strict=False)  # the bank is filled below
    if init_bank:
        key = f"buffer.{len(model.head_names)}.samples"  # the trainer stores the base last
        rows = ckpt.tensors.get(key)
        if rows is None:
            raise CheckpointError(f"{ckpt.path}: holds no base replay buffer ({key}) to take "
                                  f"the init bank from; export a checkpoint written by the "
                                  f"Trainer, or pass init_bank=0")
        if len(rows) < init_bank:
            raise ValueError(f"{ckpt.path}: the base replay buffer holds {len(rows)} samples, "
                             f"fewer than init_bank={init_bank}; ask for at most {len(rows)}")
        model.fill_init_bank(rows[-init_bank:])  # oldest first: keep the newest
    metadata = dict(ckpt.metadata)
    metadata["exported_from"] = {"checkpoint": str(ckpt.path), "step": ckpt.step,
                                 "init_bank": init_bank,
                                 "sampler_defaults": dict(sampler_defaults or {})}
    if classifiers is not None:
        model, metadata["classifiers_from"] = _with_classifiers(model, classifiers)
    return save_checkpoint(out, ckpt.step, model=model, metadata=metadata, keep=1)


def _with_classifiers(model, run) -> tuple[Any, dict[str, Any]]:
    """``model`` with the factor classifiers of the guided run ``run`` beside its heads, and
    what the metadata records of them."""
    from ..models.guided import with_classifiers_of

    source = load_checkpoint(run)
    if not getattr(source.model, "guided", False):
        raise ValueError(f"--classifiers {run}: holds no classifier heads; train them with "
                         f"conceptalg train --heads classifier --base MODEL")
    if getattr(model, "guided", True) or model.config.objective != "dsm":
        raise ValueError("classifiers go beside the film heads of a diffusion model "
                         "(--objective dsm); this model is not one")
    merged = with_classifiers_of(model, source.model)
    return merged, {"checkpoint": str(source.path), "step": source.step,
                    "views": dict(source.model.config.views)}


def _check_composition(composition: dict[str, Any]) -> None:
    """Refuse, at export rather than at the first ``compose``, composition defaults that
    ``compose`` would refuse (the compiler's own check, run on them alone)."""
    from types import SimpleNamespace

    from ..compiler.checks import resolve_negation, resolve_semantics

    hints = SimpleNamespace(default_semantics=composition.get("semantics"),
                            guidance_scale=composition.get("guidance_scale"))
    try:
        resolve_semantics(hints, None, None, None)
        if hints.guidance_scale is not None:  # kept for compose(..., semantics="guidance")
            resolve_semantics(hints, None, "guidance", None)
        if "negation_scale" in composition or "negation_sigmas" in composition:
            resolve_negation(None, None, "guidance", False, composition.get("negation_scale"),
                             composition.get("negation_sigmas"))
    except CompileError as e:
        raise ValueError(f"composition defaults {composition}: {e}") from None

"""Concept inference: which value of each factor an image shows, read from the model itself.

For a factor with values ``v_1 … v_V``, Bayes' rule with equal priors gives
``p(v | x) = softmax_v log p(x | v)``. How ``log p(x | v)`` (or ``log p(v | x)``) is read
depends on what the model learned (:func:`inference_method`):

- ``"classifier"``: heads that are classifiers give ``log p(v | x)`` directly — a model's own
  ``factor_log_probs(x, factors, sigma=None)`` (the noise-aware classifiers of a diffusion
  model with ``heads="classifier"``, read at one level σ, by default the smallest trained
  one), or ``log_softmax`` of the logits of a :class:`~conceptalg.models.ConceptModel` with
  ``heads="classifier"`` (JEM).
- ``"energy"``: energy heads (``linear`` or ``film`` heads trained by contrastive divergence,
  and diffusion models with ``parameterization="energy"``) define ``p(x | v) = exp(−E_v(x)) /
  Z_v`` at temperature 1, so ``p(v | x) = softmax_v(−E_v(x))`` *if every Z_v is equal*. Nothing
  in training makes them equal: contrastive divergence learns each energy up to its own
  constant (only the L2 penalty holds them near zero), and denoising score matching learns
  gradients only (the energy form pins ``E_v = 0`` at the data mean, so ``−E_v(x)`` is
  ``log p(x | v) / p(μ | v)``). The probabilities are therefore a ranking more than a calibrated
  posterior. Contrastive-divergence image heads run at a very low temperature, so their
  probabilities are close to 0 or 1. Diffusion energies are read at one noise level σ
  (default: the smallest trained level).
- ``"diffusion classifier"``: score-only diffusion models have no energies; the variational
  bound of the diffusion supplies ``log p(x | v)`` (Li et al. 2023, "Your diffusion model is
  secretly a zero-shot classifier"). For the variance-exploding convention (signal-to-noise
  ratio σ⁻²; Kingma et al. 2021)::

      log p(x | v) ≈ C − ∫ E_ε ‖D_v(x + σε; σ) − x‖² / σ² d ln σ,

  with ``D_v`` the model's denoiser conditioned on ``v`` and ``C`` the terms outside the
  levels' range, taken to be the same for every value. The weight is the bound's (``σ⁻²`` per
  unit of ``ln σ``), not the training loss's: it is what makes the softmax a posterior. The
  integral is a sum over a few levels (midpoint rule in ``ln σ``) and the expectation a mean
  over ``samples`` noise draws; every value sees the *same* draws (a paired comparison, so the
  noise's own ``‖ε‖²`` cancels between values). With exact denoisers of Gaussians and levels
  covering their scales this is Bayes' rule (``tests/test_infer.py`` checks it); a learned
  denoiser, a truncated range and few draws make it an approximation. With images (thousands
  of dimensions) the differences are large, so the probabilities come out close to 0 or 1.
  The cost is ``levels × samples`` network passes per image and value (by default 8 × 8; on
  the shipped ``shapes`` model about 2 s per image on one CPU thread, and 8 × 1 read as well).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Literal, Mapping, Sequence, overload

import torch
from torch import Tensor

from .heads import accepts_sigma
from .progress import progress_bar
from .sampling.settings import check_int

__all__ = ["infer", "inference_method", "inference_cost", "PROGRESS_PASSES", "diffusion_levels", "log_sigma_weights", "METHODS"]

#: how :func:`infer` reads a model (see the module docstring)
METHODS = ("classifier", "energy", "diffusion classifier")

#: ``infer(progress=None)`` reports progress for work of more network inputs than this
PROGRESS_PASSES = 20_000

#: the diffusion classifier's default levels: this many, log-spaced over ``_LEVEL_RANGE · σ_d``
_LEVELS = 8
_LEVEL_RANGE = (0.05, 1.0)

Labels = dict[str, list[str]]
Probs = dict[str, Tensor]


@overload
def infer(model, images: Tensor, factors: Sequence[str] | str | None = None, *,
          return_probs: Literal[False] = False, sigma=None, batch_size: int = 256,
          device=None, samples: int = 8, seed: int = 0,
          method: str | None = None, progress: bool | None = None) -> Labels: ...


@overload
def infer(model, images: Tensor, factors: Sequence[str] | str | None = None, *,
          return_probs: Literal[True], sigma=None, batch_size: int = 256,
          device=None, samples: int = 8, seed: int = 0,
          method: str | None = None, progress: bool | None = None) -> tuple[Labels, Probs]: ...


def infer(model, images, factors=None, *, return_probs=False, sigma=None, batch_size=256,
          device=None, samples=8, seed=0, method=None, progress=None):
    """For each factor, the most probable value of each image (concept inference from the
    model's own heads; the module docstring says how each kind of model is read).

    ``model`` is a trained model or a path that :func:`conceptalg.load` reads. ``images`` is a
    tensor ``[N, *sample_shape]`` (images: float ``[N, C, H, W]`` in ``[0, 1]``). ``factors``
    names the factors to infer (default: all of them). Returns ``{factor: [value of each
    image]}``; with ``return_probs=True``, ``(labels, probs)`` where ``probs[factor]`` is a
    float tensor ``[N, V]`` on the CPU, rows summing to 1, columns in the order of
    ``model.config.factors[factor]``.

    ``sigma`` is the noise level of diffusion models: one level for energies and noise-aware
    classifiers (default: the smallest trained level), one or several levels for the diffusion
    classifier (default: 8 levels from 0.05 σ_d to σ_d, :func:`diffusion_levels`); models
    trained by contrastive divergence have none. The diffusion classifier's ``samples`` noise
    draws per level come from a CPU generator seeded with ``seed`` and are shared by every
    image, so the result depends on neither ``batch_size`` nor the device. ``batch_size`` caps
    the network inputs of one forward pass (an image counts once per value where each value
    needs its own pass). ``device`` moves the model there (``nn.Module.to``); the model is put
    in eval mode for the call and back afterwards.

    ``method`` chooses how the model is read (:data:`METHODS`; default
    :func:`inference_method`: a model's own classifiers when it has them — one pass per image —
    else its energies, else the diffusion classifier); ``"diffusion classifier"`` reads a
    score-only model through its denoisers even when it carries classifiers. ``progress``
    shows a progress report (True, False, or None: only for work of more than
    :data:`PROGRESS_PASSES` network inputs; :func:`inference_cost` says how many).

    Example:
        >>> import torch, conceptalg
        >>> from conceptalg.models import ConceptModel, ModelConfig
        >>> cfg = ModelConfig(sample_shape=(2,), factors={"side": ["left", "right"]},
        ...                   heads="classifier", backbone="mlp", bounds=None)
        >>> model = ConceptModel(cfg)
        >>> labels, probs = conceptalg.infer(model, torch.zeros(3, 2), return_probs=True)
        >>> len(labels["side"]), probs["side"].shape, bool(probs["side"].sum(1).allclose(
        ...     torch.ones(3)))
        (3, torch.Size([3, 2]), True)
    """
    model = _resolve_model(model)
    names = _check_factors(model, factors)
    check_int("batch_size", batch_size, 1)
    check_int("samples", samples, 1)
    check_int("seed", seed, 0)
    if not isinstance(return_probs, bool):
        raise ValueError(f"return_probs must be True or False, got {return_probs!r}")
    x = _check_images(model, images)
    plan = _plan(model, names, sigma, samples, seed, method)
    if device is not None:
        model.to(device)
    where = _model_device(model)
    values = {f: model.config.factors[f] for f in names}
    per_pass = max(1, batch_size // plan.inputs_per_image)
    chunks: dict[str, list[Tensor]] = {f: [] for f in names}
    training = model.training
    model.eval()
    if progress is None:
        progress = plan.cost * x.shape[0] > PROGRESS_PASSES
    bar = progress_bar(x.shape[0], f"inferring ({plan.method})", unit="image",
                       enabled=bool(progress))
    try:
        with torch.no_grad():
            for start in range(0, x.shape[0], per_pass):
                batch = x[start:start + per_pass].to(where)
                scores = plan.log_probs(batch)                            # {f: [B, V]}
                for f in names:
                    chunks[f].append(_normalised(scores[f], f, values[f], batch.shape[0]))
                bar.update(batch.shape[0])
    finally:
        bar.close()
        model.train(training)
    probs = {f: torch.cat(chunks[f]).exp() if chunks[f] else torch.zeros(0, len(values[f]))
             for f in names}
    labels = {f: [values[f][i] for i in probs[f].argmax(1).tolist()] for f in names}
    return (labels, probs) if return_probs else labels


def inference_cost(model, factors: Sequence[str] | str | None = None, *, samples: int = 8,
                   sigma=None, method: str | None = None) -> tuple[str, int]:
    """``(method, network inputs per image)`` of :func:`infer` on ``model`` — the cost to
    expect before reading many images (a noise-aware classifier: 1; the diffusion
    classifier: levels × samples × values).

    Example:
        >>> from conceptalg.models import ConceptModel, ModelConfig
        >>> cfg = ModelConfig(sample_shape=(2,), factors={"side": ["left", "right"]},
        ...                   heads="classifier", backbone="mlp", bounds=None)
        >>> inference_cost(ConceptModel(cfg))
        ('classifier', 1)
    """
    model = _resolve_model(model)
    plan = _plan(model, _check_factors(model, factors), sigma, samples, 0, method)
    return plan.method, plan.cost


def inference_method(model) -> str:
    """How :func:`infer` reads ``model``: one of :data:`METHODS` (module docstring).

    Example:
        >>> from conceptalg.models import ConceptModel, ModelConfig
        >>> cfg = ModelConfig(sample_shape=(2,), factors={"side": ["left", "right"]},
        ...                   backbone="mlp", bounds=None)
        >>> inference_method(ConceptModel(cfg))
        'energy'
    """
    cfg = model.config
    if getattr(cfg, "heads", None) == "classifier" or getattr(cfg, "classifiers", False):
        if not any(callable(getattr(model, name, None))
                   for name in ("factor_log_probs", "classifier_logits")):
            raise ValueError(f"{type(model).__name__} has classifier heads but no "
                             f"factor_log_probs method to read them; update conceptalg, or "
                             f"infer with a model trained with heads='film'")
        return "classifier"
    if getattr(cfg, "objective", "cd") != "dsm":
        return "energy"
    return "diffusion classifier" if cfg.parameterization == "score" else "energy"


def diffusion_levels(sigma_data: float, sigma_min: float = 0.0,
                     sigma_max: float = math.inf, n: int = _LEVELS) -> list[float]:
    """The diffusion classifier's default noise levels: the midpoints of ``n`` equal bins of
    ``ln σ`` over ``[0.05 σ_d, σ_d]``, kept within the model's ``[σ_min, σ_max]``.

    Example:
        >>> [round(s, 3) for s in diffusion_levels(1.0, n=2)]
        [0.106, 0.473]
    """
    lo = max(_LEVEL_RANGE[0] * sigma_data, sigma_min)
    hi = min(_LEVEL_RANGE[1] * sigma_data, sigma_max)
    if not lo < hi:
        return [lo]
    width = (math.log(hi) - math.log(lo)) / n
    return [math.exp(math.log(lo) + (k + 0.5) * width) for k in range(n)]


# --- checking the arguments -----------------------------------------------------------------

def _resolve_model(model):
    if isinstance(model, (str, os.PathLike)):
        from .training.checkpoint import load

        return load(model)
    config = getattr(model, "config", None)
    if not isinstance(model, torch.nn.Module) or config is None \
            or not hasattr(config, "factors") or not hasattr(config, "sample_shape"):
        raise TypeError(f"infer needs a trained model (conceptalg.load(path)) or its path, got "
                        f"{type(model).__name__}")
    return model


def _check_factors(model, factors) -> list[str]:
    known = list(model.config.factors)
    if not known:
        raise ValueError("the model has no factors to infer (only parametric concepts "
                         f"{sorted(model.config.parametric)})")
    if factors is None:
        return known
    if isinstance(factors, str):
        factors = [factors]
    names = list(dict.fromkeys(str(f) for f in factors))
    if not names:
        raise ValueError(f"factors is empty; name some of {', '.join(known)}, or give None "
                         f"for all")
    unknown = [f for f in names if f not in model.config.factors]
    if unknown:
        raise ValueError(f"the model has no factor(s) {', '.join(map(repr, unknown))}; its "
                         f"factors are {', '.join(known)}")
    return names


def _check_images(model, images) -> Tensor:
    shape = tuple(model.config.sample_shape)
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a tensor [N, {', '.join(map(str, shape))}], got "
                        f"{type(images).__name__}")
    want = "×".join(map(str, shape))
    if tuple(images.shape) == shape:
        raise ValueError(f"images must be a batch [N, {want}]; got one image of shape "
                         f"{want}: add a batch dimension (images.unsqueeze(0))")
    if images.dim() != len(shape) + 1 or tuple(images.shape[1:]) != shape:
        got = "×".join(map(str, images.shape[1:])) if images.dim() > 1 else "(none)"
        raise ValueError(f"the model takes samples of shape {want}; images have shape "
                         f"{list(images.shape)} (each {got}); resize them, or use a model "
                         f"trained on {got} samples")
    if not images.dtype.is_floating_point:
        raise ValueError(f"images must be floating point (the model's units, [0, 1] for "
                         f"images), got {images.dtype}; e.g. images.float() / 255")
    x = images.detach().float()
    if not torch.isfinite(x).all():
        raise ValueError("images hold NaN or infinite values")
    bounds = model.config.bounds
    if bounds is not None and x.numel():
        lo, hi = bounds
        slack = 1e-3 * (hi - lo)
        if x.min() < lo - slack or x.max() > hi + slack:
            raise ValueError(f"images span [{float(x.min()):.4g}, {float(x.max()):.4g}], "
                             f"outside the model's bounds [{lo:g}, {hi:g}]"
                             + ("; for 8-bit images divide by 255" if x.max() > 1.5 and hi == 1
                                else ""))
    return x


def _check_level(value, what: str = "sigma") -> float:
    if isinstance(value, (list, tuple, Tensor)) and not (isinstance(value, Tensor)
                                                          and value.dim() == 0):
        raise ValueError(f"{what}: this model is read at one noise level, got {value!r}; give "
                         f"one number (several levels apply to score-only diffusion models)")
    try:
        s = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number > 0, got {value!r}") from None
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"{what} must be a finite number > 0, got {value!r}")
    return s


def _model_device(model) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _normalised(scores: Tensor, factor: str, values: Sequence[str], b: int) -> Tensor:
    """``log_softmax`` over the values, on the CPU in float32, after checking the shape."""
    if not isinstance(scores, Tensor) or tuple(scores.shape) != (b, len(values)):
        got = list(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(f"the model gave {got} for factor {factor!r}; expected [{b}, "
                         f"{len(values)}] (a column per value)")
    return torch.log_softmax(scores.double(), dim=1).float().cpu()


# --- the three ways to read a model ---------------------------------------------------------

@dataclass(frozen=True)
class _Plan:
    """``log_probs(x[B, ...]) -> {factor: [B, V]}`` (unnormalised log-probabilities) and the
    network inputs one image costs in a forward pass."""

    log_probs: Callable[[Tensor], Mapping[str, Tensor]]
    inputs_per_image: int
    method: str
    #: forward passes per batch (the diffusion classifier: levels × samples)
    passes: int = 1

    @property
    def cost(self) -> int:
        """Network inputs per image, all passes together."""
        return self.inputs_per_image * self.passes


def _plan(model, factors: list[str], sigma, samples: int, seed: int,
          method: str | None = None) -> _Plan:
    default = inference_method(model)
    if method is None:
        method = default
    elif method != default and method != "diffusion classifier":
        raise ValueError(f"method must be None, {default!r} or 'diffusion classifier' for this "
                         f"model; got {method!r}")
    cfg = model.config
    if method == "diffusion classifier" and (getattr(cfg, "objective", "cd") != "dsm"
                                             or cfg.heads != "film"):
        raise ValueError("the diffusion classifier reads a diffusion model with film heads "
                         "(one denoiser per concept); this model has none")
    heads = [f"{f}={v}" for f in factors for v in cfg.factors[f]]
    dsm = getattr(cfg, "objective", "cd") == "dsm"
    if not dsm and sigma is not None and not accepts_sigma(getattr(model, "factor_log_probs",
                                                                   None)):
        raise ValueError(f"sigma is a noise level of diffusion models; this model was trained "
                         f"by contrastive divergence and has none: drop sigma (got {sigma!r})")
    if method == "classifier":
        return _Plan(_classifier(model, factors, sigma), 1, method)
    if method == "energy":
        return _Plan(_energies(model, factors, heads, sigma), len(heads) if
                     dsm or getattr(cfg, "heads", None) == "film" else 1, method)
    levels = _levels(model, sigma)
    return _Plan(_diffusion_classifier(model, factors, heads, levels, samples, seed),
                 len(heads), method, len(levels) * samples)


def _classifier(model, factors: list[str], sigma) -> Callable:
    method = getattr(model, "factor_log_probs", None)
    if callable(method):
        if accepts_sigma(method):
            s = None if sigma is None else _check_level(sigma)
            return lambda x: method(x, factors, sigma=s)
        if sigma is not None:
            raise ValueError(f"{type(model).__name__}.factor_log_probs takes no noise level: "
                             f"drop sigma (got {sigma!r})")
        return lambda x: method(x, factors)

    def read(x: Tensor) -> dict[str, Tensor]:
        logits = model.classifier_logits(x)                               # {f: [B, V]}
        return {f: torch.log_softmax(logits[f], dim=1) for f in factors}
    return read


def _energies(model, factors: list[str], heads: list[str], sigma) -> Callable:
    """``−E_v(x)`` at temperature 1, split by factor."""
    sizes = [len(model.config.factors[f]) for f in factors]
    if getattr(model.config, "objective", "cd") == "dsm":
        s = model.sigma_min if sigma is None else _check_level(sigma)

        def energy(x: Tensor) -> Tensor:
            return model.concept_energies(x, heads, sigma=s)              # [B, K]
    else:
        temperature = float(model.config.temperature)

        def energy(x: Tensor) -> Tensor:
            return model.concept_energies(x, heads) / temperature         # [B, K]

    def read(x: Tensor) -> dict[str, Tensor]:
        columns = (-energy(x)).split(sizes, dim=1)
        return dict(zip(factors, columns))
    return read


def _levels(model, sigma) -> list[float]:
    if sigma is None:
        return diffusion_levels(model.sigma_data, model.sigma_min, model.sigma_max)
    if isinstance(sigma, Tensor):
        sigma = sigma.flatten().tolist()
    if isinstance(sigma, (list, tuple)):
        if not sigma:
            raise ValueError("sigma is an empty list of levels; give at least one, or None "
                             "for the default levels")
        return [_check_level(s) for s in sigma]
    return [_check_level(sigma)]


def log_sigma_weights(levels: Sequence[float]) -> list[float]:
    """Quadrature weights in ``ln σ`` for ``levels`` (any order): each level's share of the
    ``ln σ`` axis, from half-way to its neighbours (an end level mirrors its one neighbour); the
    midpoint rule for evenly log-spaced levels. One level gets weight 1.

    Example:
        >>> [round(w, 4) for w in log_sigma_weights([0.1, 1.0, 10.0])]
        [2.3026, 2.3026, 2.3026]
    """
    order = sorted(range(len(levels)), key=lambda k: levels[k])
    logs = [math.log(levels[k]) for k in order]
    if len(logs) == 1:
        return [1.0]
    gaps = [b - a for a, b in zip(logs, logs[1:])]
    sorted_weights = [(left + right) / 2 for left, right in
                      zip([gaps[0]] + gaps, gaps + [gaps[-1]])]
    weights = [0.0] * len(levels)
    for k, w in zip(order, sorted_weights):
        weights[k] = w
    return weights


def _diffusion_classifier(model, factors: list[str], heads: list[str], levels: list[float],
                          samples: int, seed: int) -> Callable:
    """``−Σ_k w_k mean_ε ‖D_v(x + σ_k ε; σ_k) − x‖² / σ_k²`` per value (module docstring)."""
    shape = tuple(model.config.sample_shape)
    generator = torch.Generator().manual_seed(seed)
    # one set of draws for every image and every value: the comparison between values is paired
    noise = torch.randn((len(levels), samples, *shape), generator=generator)  # [L, S, ...]
    weights = log_sigma_weights(levels)
    rows = [model.index[h] for h in heads]
    sizes = [len(model.config.factors[f]) for f in factors]

    def read(x: Tensor) -> dict[str, Tensor]:
        b, k = x.shape[0], len(heads)
        xs = x.repeat((k,) + (1,) * (x.dim() - 1))                        # [K·B, ...]
        row = torch.tensor(rows, device=x.device).repeat_interleave(b)    # [K·B]
        eps = noise.to(x.device)
        error = torch.zeros(k * b, dtype=torch.float64, device=x.device)  # [K·B]
        for level, (sigma, weight) in enumerate(zip(levels, weights)):
            s = torch.full((k * b,), sigma, device=x.device)
            for draw in range(samples):
                denoised = model.denoise_for(xs + sigma * eps[level, draw], row, None, s)
                sq = (denoised - xs).square().flatten(1).sum(1)           # [K·B]
                error += (weight / (samples * sigma ** 2)) * sq.double()
        columns = (-error).reshape(k, b).T.split(sizes, dim=1)            # [B, V] each
        return dict(zip(factors, columns))
    return read

"""Resolving the non-tensor settings of a ``sample()`` call into one checked plan.

Precedence, highest first: an explicit ``sample()`` argument; the field of a configured sampler
object; the energy's ``sampler_defaults`` (its sampler-specific keys — step size, noise scale,
clipping, leapfrog steps, targets — only when the chosen sampler is the one they were tuned for,
``sampler_defaults["sampler"]``, default ``"langevin"``); the sampler's own defaults. A setting
given both in ``sample()`` and on the sampler object must agree. Pure Python: no tensors are made
here (a per-chain step-size tensor is passed through).

Noise levels: ``sigmas`` (explicit, else ``sampler_defaults["sigmas"]``; non-increasing, ≥ 0)
are checked here, need a σ-aware energy, allow only a constant temperature, and make ``steps``
count per level (default: the sampler's default total split over the levels).
``sampler="heun"`` has no steps, warm-up or step size: given explicitly they are an error; from
``sampler_defaults`` they are ignored; its steps are the levels > 0 (a trailing 0 is the end).
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Optional, Union

from torch import Tensor

from .anneal import accepts_sigma, check_sigmas
from .base import check_positive
from .heun import Heun, step_levels
from .hmc import HMC
from .langevin import Langevin
from .mala import MALA
from .mh import MH

__all__ = ["SamplerConfig", "SAMPLERS", "Plan", "make_plan", "check_int", "DEFAULT_SAMPLER",
           "DEFAULT_TEMPERATURE", "check_sampler_defaults"]

SamplerConfig = Union[Langevin, MALA, HMC, MH, Heun]
SAMPLERS: dict[str, type] = {"langevin": Langevin, "mala": MALA, "hmc": HMC, "mh": MH,
                             "heun": Heun}

_SAMPLER_KEYS = ("step_size", "noise_scale", "grad_clip", "num_leapfrog", "jitter",
                 "target_accept", "adapt", "churn")
_RUN_KEYS = ("on_nonfinite", "batch_size", "thin", "check_every")
_OPTIONS = frozenset(_SAMPLER_KEYS[2:] + _RUN_KEYS + ("mask", "deterministic", "sigma_data"))
_DEFAULT_KEYS = frozenset(("sampler", "steps", "warmup", "temperature", "bounds", "sigmas",
                           "sigma_data") + _SAMPLER_KEYS + _RUN_KEYS)
_NOT_FOR_HEUN = ("thin", "check_every", "sigma_data", "grad_clip", "num_leapfrog", "jitter",
                 "target_accept", "adapt")


class DefaultStr(str):
    """The signature's default sampler name, told apart from an explicit ``"langevin"``."""


class DefaultFloat(float):
    """The signature's default temperature, told apart from an explicit ``1.0``."""


DEFAULT_SAMPLER = DefaultStr("langevin")
DEFAULT_TEMPERATURE = DefaultFloat(1.0)


@dataclasses.dataclass(frozen=True)
class Plan:
    """Every setting of a run that is not a tensor, resolved and checked."""

    config: SamplerConfig
    steps: int
    warmup: int
    step_size: Union[float, Tensor]
    temperature: Any
    bounds: Any
    on_nonfinite: str
    check_every: int
    thin: int
    batch_size: Optional[int]
    deterministic: bool
    sigmas: Optional[tuple[float, ...]] = None
    sigma_data: float = 1.0


def make_plan(energy, sampler, steps, warmup, step_size, noise_scale, temperature,
              options: dict[str, Any], sigmas: Any = None) -> Plan:
    """Resolve the settings: explicit > the sampler object's field > ``energy.sampler_defaults``
    (dropping sampler-specific ones tuned for another sampler) > the sampler's defaults."""
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise TypeError(f"sample() got unknown option {unknown[0]!r}"
                        f"{_did_you_mean(unknown[0], _OPTIONS)}; options: {sorted(_OPTIONS)}")
    defaults = _energy_defaults(energy)
    tuned_for = _sampler_config(defaults.pop("sampler", "langevin"))
    config = tuned_for if isinstance(sampler, DefaultStr) else _sampler_config(sampler)
    if config.name != tuned_for.name:
        for key in _SAMPLER_KEYS:
            defaults.pop(key, None)
    sigmas = _resolve_sigmas(energy, sigmas, defaults.pop("sigmas", None))
    if isinstance(config, Heun):
        return _heun_plan(energy, config, sigmas, dict(steps=steps, warmup=warmup,
                          step_size=step_size, noise_scale=noise_scale), temperature, options,
                          defaults)
    sigma_data = _sigma_data(energy, sigmas, options, defaults)
    if not isinstance(temperature, DefaultFloat):
        defaults.pop("noise_scale", None)                 # an explicit T replaces a default σ
    else:
        temperature = defaults.get("temperature", float(temperature))
    per_chain = step_size if isinstance(step_size, Tensor) else None
    given = {"step_size": None if per_chain is not None else step_size,
             "noise_scale": noise_scale, **{k: options[k] for k in _SAMPLER_KEYS if k in options}}
    config = _configure(config, given, defaults)
    if per_chain is not None and config.step_size is not None:
        raise ValueError(f"step_size is set twice, to {config.step_size!r} on the sampler "
                         f"object and to a tensor in sample(); give it once")
    if getattr(config, "noise_scale", None) is not None and not _is_one(temperature):
        raise ValueError(f"give either noise_scale (σ, which sets T = σ²/(2·step_size)) or "
                         f"temperature, not both (noise_scale={config.noise_scale}, "
                         f"temperature={temperature!r})")
    if sigmas is not None and (isinstance(temperature, bool)
                               or not isinstance(temperature, (int, float))):
        raise ValueError(f"with sigmas, temperature must be one number (every level targets "
                         f"exp(−E(x, σ)/T); the noise levels are the annealing), got "
                         f"{type(temperature).__name__}")
    default_steps = config.default_steps if sigmas is None else \
        max(1, config.default_steps // len(sigmas))                       # steps per level
    steps = defaults.get("steps", default_steps) if steps is None else steps
    check_int("steps", steps, 1)
    warmup = defaults.get("warmup", steps // 2) if warmup is None else warmup
    check_int("warmup", warmup, 0)
    if warmup >= steps:
        raise ValueError(f"warmup must be < steps (at least one kept step), got warmup={warmup}, "
                         f"steps={steps}")
    run_opts = {k: options.get(k, defaults.get(k)) for k in _RUN_KEYS}
    on_nonfinite = run_opts["on_nonfinite"] or "raise"
    if on_nonfinite not in ("raise", "reset"):
        raise ValueError(f"on_nonfinite must be 'raise' or 'reset', got {on_nonfinite!r}")
    check_every = 10 if run_opts["check_every"] is None else run_opts["check_every"]
    check_int("check_every", check_every, 1)
    thin = 1 if run_opts["thin"] is None else run_opts["thin"]
    check_int("thin", thin, 1)
    if thin > steps - warmup:
        raise ValueError(f"thin must be ≤ steps − warmup = {steps - warmup} (the kept steps), "
                         f"got thin={thin}")
    if run_opts["batch_size"] is not None:
        check_int("batch_size", run_opts["batch_size"], 1)
    start = per_chain if per_chain is not None else \
        config.step_size if config.step_size is not None else config.default_step_size
    return Plan(config, steps, warmup, start, temperature,
                getattr(energy, "bounds", None) or defaults.get("bounds"), on_nonfinite,
                check_every, thin, run_opts["batch_size"], bool(options.get("deterministic")),
                sigmas, sigma_data)


def _resolve_sigmas(energy, explicit, default) -> Optional[tuple[float, ...]]:
    """The checked noise levels (explicit > ``sampler_defaults``), or None."""
    sigmas = explicit if explicit is not None else default
    if sigmas is None:
        return None
    sigmas = check_sigmas(sigmas)
    if not accepts_sigma(energy):
        raise ValueError(f"sigmas needs a σ-aware energy, one that accepts the noise level as a "
                         f"keyword, E(x, sigma=σ[B]) (a compiled expression of noise-conditioned "
                         f"concepts, or a function with a 'sigma' parameter); this "
                         f"{type(energy).__name__} does not")
    return sigmas


def _sigma_data(energy, sigmas, options, defaults) -> float:
    """The data scale σ_d of the per-level step-size rule: the ``sigma_data`` option >
    ``sampler_defaults`` > the energy's ``sigma_data`` attribute > 1."""
    if "sigma_data" in options and sigmas is None:
        raise ValueError("sigma_data sets the per-level step sizes of a run over noise levels; "
                         "it applies only with sigmas=")
    value = options.get("sigma_data", defaults.get("sigma_data"))
    if value is None:
        value = getattr(energy, "sigma_data", None)
        value = float(value) if isinstance(value, (int, float, Tensor)) \
            and not isinstance(value, bool) else 1.0
    check_positive("sigma_data", value)
    return float(value)


def _heun_plan(energy, config: Heun, sigmas, explicit: dict[str, Any], temperature,
               options: dict[str, Any], defaults: dict[str, Any]) -> Plan:
    """The plan of a reverse-diffusion run: levels, churn, chunking; nothing step-based."""
    if sigmas is None:
        raise ValueError("sampler='heun' integrates over noise levels: give sigmas= (a "
                         "non-increasing sequence, e.g. karras_sigmas(18, 0.002, 80.0)), or use "
                         "an energy whose sampler_defaults hold 'sigmas'")
    explicit.update({k: options[k] for k in _NOT_FOR_HEUN if k in options})
    for key, value in explicit.items():
        if value is not None:
            raise ValueError(f"{key}={value!r} does not apply to sampler='heun': it takes one "
                             f"Heun step between consecutive noise levels (set their number "
                             f"with sigmas), with no step size, warm-up or acceptance test")
    if not isinstance(temperature, DefaultFloat) and not _is_one(temperature):
        raise ValueError(f"sampler='heun' draws from the model's own law (temperature 1), got "
                         f"temperature={temperature!r}; use an MCMC sampler to change T")
    if options.get("on_nonfinite", "raise") != "raise":
        raise ValueError("sampler='heun' is deterministic given its start: there is nothing to "
                         "restart, so on_nonfinite must be 'raise'")
    config = _configure(config, {"churn": options.get("churn")}, defaults)
    batch_size = options.get("batch_size", defaults.get("batch_size"))
    if batch_size is not None:
        check_int("batch_size", batch_size, 1)
    steps = len(step_levels(sigmas))                   # a trailing 0 is the end, not a step
    return Plan(config, steps, 0, 0.0, 1.0,
                getattr(energy, "bounds", None) or defaults.get("bounds"), "raise",
                steps, 1, batch_size, bool(options.get("deterministic")), sigmas, 1.0)


def check_int(name: str, value: Any, minimum: int) -> None:
    """Reject a value that is not an integer ≥ ``minimum``, naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_sampler_defaults(defaults: Any) -> None:
    """Reject a ``sampler_defaults`` that is not a dict of known ``sample()`` keywords."""
    if not isinstance(defaults, dict):
        raise TypeError(f"energy.sampler_defaults must be a dict, got {type(defaults).__name__}")
    unknown = sorted(set(defaults) - _DEFAULT_KEYS)
    if unknown:
        raise ValueError(f"energy.sampler_defaults has unknown key {unknown[0]!r}"
                         f"{_did_you_mean(unknown[0], _DEFAULT_KEYS)}; allowed: "
                         f"{sorted(_DEFAULT_KEYS)}")
    if defaults.get("sigmas") is not None:
        check_sigmas(defaults["sigmas"])


def _energy_defaults(energy) -> dict[str, Any]:
    defaults = getattr(energy, "sampler_defaults", None) or {}
    check_sampler_defaults(defaults)
    return dict(defaults)


def _sampler_config(sampler) -> SamplerConfig:
    if isinstance(sampler, str):
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {sorted(SAMPLERS)} or a sampler object, "
                             f"got {sampler!r}{_did_you_mean(sampler, SAMPLERS)}")
        return SAMPLERS[sampler]()
    if isinstance(sampler, tuple(SAMPLERS.values())):
        return sampler
    raise TypeError(f"sampler must be a name ({sorted(SAMPLERS)}) or a Langevin/MALA/HMC/MH/"
                    f"Heun object, got {type(sampler).__name__}")


def _configure(config: SamplerConfig, given: dict[str, Any],
               defaults: dict[str, Any]) -> SamplerConfig:
    """Fill the sampler's fields: explicit > the object's own setting > energy defaults."""
    fields = {f.name: f.default for f in dataclasses.fields(config)}
    changes = {}
    for key, value in given.items():
        if value is None:
            continue
        if key not in fields:
            if key == "noise_scale":
                raise ValueError(f"noise_scale applies only to sampler='langevin'; "
                                 f"{config.name!r} corrects towards exp(−E/T) exactly, so set "
                                 f"temperature instead (T = σ²/(2·step_size))")
            raise ValueError(f"option {key}={value!r} does not apply to sampler "
                             f"{config.name!r} (its settings: {sorted(fields)})")
        own = getattr(config, key)
        if own != fields[key] and own != value:
            raise ValueError(f"{key} is set twice, to {own!r} on the sampler object and to "
                             f"{value!r} in sample(); give it once")
        changes[key] = value
    for key, value in defaults.items():
        if key in fields and key not in changes and getattr(config, key) == fields[key]:
            changes[key] = value
    return dataclasses.replace(config, **changes)


def _is_one(temperature) -> bool:
    return isinstance(temperature, (int, float)) and float(temperature) == 1.0

"""Resolving the non-tensor settings of a ``sample()`` call into one checked plan.

Precedence, highest first: an explicit ``sample()`` argument; the field of a configured sampler
object; the energy's ``sampler_defaults`` (its sampler-specific keys — step size, noise scale,
clipping, leapfrog steps, targets — only when the chosen sampler is the one they were tuned for,
``sampler_defaults["sampler"]``, default ``"langevin"``); the sampler's own defaults. A setting
given both in ``sample()`` and on the sampler object must agree. Pure Python: no tensors are made
here (a per-chain step-size tensor is passed through).
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Optional, Union

from torch import Tensor

from .hmc import HMC
from .langevin import Langevin
from .mala import MALA
from .mh import MH

__all__ = ["SamplerConfig", "SAMPLERS", "Plan", "make_plan", "check_int", "DEFAULT_SAMPLER",
           "DEFAULT_TEMPERATURE", "check_sampler_defaults"]

SamplerConfig = Union[Langevin, MALA, HMC, MH]
SAMPLERS: dict[str, type] = {"langevin": Langevin, "mala": MALA, "hmc": HMC, "mh": MH}

_SAMPLER_KEYS = ("step_size", "noise_scale", "grad_clip", "num_leapfrog", "jitter",
                 "target_accept", "adapt")
_RUN_KEYS = ("on_nonfinite", "batch_size", "thin", "check_every")
_OPTIONS = frozenset(_SAMPLER_KEYS[2:] + _RUN_KEYS + ("mask", "deterministic"))
_DEFAULT_KEYS = frozenset(("sampler", "steps", "warmup", "temperature", "bounds")
                          + _SAMPLER_KEYS + _RUN_KEYS)


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


def make_plan(energy, sampler, steps, warmup, step_size, noise_scale, temperature,
              options: dict[str, Any]) -> Plan:
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
    steps = defaults.get("steps", config.default_steps) if steps is None else steps
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
                check_every, thin, run_opts["batch_size"], bool(options.get("deterministic")))


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
    raise TypeError(f"sampler must be a name ({sorted(SAMPLERS)}) or a Langevin/MALA/HMC/MH "
                    f"object, got {type(sampler).__name__}")


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

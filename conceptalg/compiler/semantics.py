"""The three semantics as three small objects: what each makes of the program's root value, of
its leaves and of ``E_0`` (docs/design.md §4; ``E_0`` the base energy, ``w`` the guidance scale).

- :data:`PRODUCT`: ``E`` is the root value; ``E_0`` enters the program only where a negation
  needs an anchor (an AND with no positive term, a negation at the root or under an OR).
- :data:`GUIDANCE`: the program runs on ``D_c = E_c − E_0`` and ``E = E_0 + w·D``; negated
  terms may take their own weight and noise levels.
- :data:`LOGIC`: the program runs on ``log p(c|x)`` and ``E = E_0 − w·log P``.

A leaf's *mode* says how a head's raw output (``r``: an energy, a score's energy or
``log p(c|x)``) becomes its value in the program: ``"E"`` (``r``), ``"E-E0"`` (``r − E_0``),
``"E0-r"`` (``E_0 − r``), ``"-r"`` and ``"r"``. The program (:mod:`.program`) and the module
that runs it (:mod:`.energy`) ask these objects instead of comparing semantics names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from torch import Tensor

from ..errors import CompileError
from .normalize import _check_semantics

__all__ = ["Semantics", "PRODUCT", "GUIDANCE", "LOGIC", "semantics_named"]


@dataclass(frozen=True)
class Semantics:
    """One semantics: its name, how its program is planned, and how the root becomes ``E``.

    ``linear``: an AND is a weighted sum and ``~`` a sign (product, guidance), so the normal
    form flattens ANDs through negations and the program is made of linear ops and soft-mins;
    otherwise the program multiplies probabilities (logic). ``anchors``: ``E_0`` is added inside
    the program where a negation needs it. ``needs_base``: every energy includes ``E_0``.
    ``scaled``: takes a guidance scale ``w``. ``negation_options``: takes ``negation_scale`` and
    ``negation_sigmas``. ``modes``: head kind → leaf mode (module docstring; read-only).

    Example:
        >>> import torch
        >>> GUIDANCE.energy(torch.tensor([1.0]), torch.tensor([10.0]), 3.0)  # E_0 + w·D
        tensor([13.])
        >>> semantics_named("logic").modes
        {'log_prob': 'r'}
    """

    name: str
    linear: bool
    anchors: bool
    needs_base: bool
    scaled: bool
    negation_options: bool
    modes: Mapping[str, str] = field(compare=False)

    def energy(self, out: Any, e0: Any, w: float | None) -> Any:
        """``E`` from the root value ``out`` and ``E_0`` (tensors of values, or coefficient
        vectors over the atoms)."""
        raise NotImplementedError

    def disjunct_excess(self, value: Tensor, e0: Tensor, w: float | None) -> Tensor:
        """``E_i − E_0`` of a disjunct whose program value is ``value`` (for ``calibrate``)."""
        raise CompileError("calibrate applies to the product and guidance semantics")

    def __repr__(self) -> str:
        return self.name.upper()

    def __reduce__(self) -> tuple:  # one object per semantics, through copies and pickles too
        return semantics_named, (self.name,)


class _Product(Semantics):
    def energy(self, out: Any, e0: Any, w: float | None) -> Any:
        return out

    def disjunct_excess(self, value: Tensor, e0: Tensor, w: float | None) -> Tensor:
        return value - e0


class _Guidance(Semantics):
    def energy(self, out: Any, e0: Any, w: float | None) -> Any:
        return e0 + out if w == 1.0 else e0 + w * out

    def disjunct_excess(self, value: Tensor, e0: Tensor, w: float | None) -> Tensor:
        return value if w == 1.0 else value * w  # the disjunct's energy is E_0 + w D_i


class _Logic(Semantics):
    def energy(self, out: Any, e0: Any, w: float | None) -> Any:
        return e0 - out if w == 1.0 else e0 - w * out


PRODUCT = _Product("product", linear=True, anchors=True, needs_base=False, scaled=False,
                   negation_options=False,
                   modes=dict({"energy": "E", "score": "E", "log_prob": "E0-r"}))
GUIDANCE = _Guidance("guidance", linear=True, anchors=False, needs_base=True, scaled=True,
                     negation_options=True,
                     modes=dict({"energy": "E-E0", "score": "E-E0", "log_prob": "-r"}))
LOGIC = _Logic("logic", linear=False, anchors=False, needs_base=True, scaled=True,
               negation_options=False, modes=dict({"log_prob": "r"}))

_BY_NAME = {s.name: s for s in (PRODUCT, GUIDANCE, LOGIC)}  # in the order of SEMANTICS


def semantics_named(name: str) -> Semantics:
    """The semantics called ``name`` (a :class:`CompileError` naming the choices otherwise).

    Example:
        >>> semantics_named("product") is PRODUCT
        True
    """
    _check_semantics(name)
    return _BY_NAME[name]

"""Concept expression → normal form → flat energy program → :class:`ComposedEnergy`.

**Normal form.** Weights and negations move outward: every And/Or child is a term
``(w, sign, body)`` (:func:`conceptalg.expr.split_term`), double negations vanish, nested Ors
of weight 1 are flattened. Under ``product`` and ``guidance`` an And is a weighted sum and ``~``
a sign, so nested Ands are flattened through weights *and* negations (``c & ~(a & ~b)`` is
``c & ~a & b``, ``2 * (~a & ~b)`` is ``2 * ~a & 2 * ~b``); under ``logic`` only through weights
(``P(a ∧ b)^w = P(a)^w P(b)^w``). Repeated And terms fold into one weight.

**Semantics** (docs/design.md §4; ``E_0`` is the base energy, τ = ``or_temperature``, ℓ_i OR log-weights):

- ``product``: an And is ``Σ w_i · sign_i · E[body_i]``, plus one ``E_0`` when no term is
  positive; an Or is ``−τ · logsumexp_i(ℓ_i − E[child_i] / τ)``; a negation anywhere else (the
  root, an Or child) is ``E_0 − w · E[body]``; a concept is ``E_c``.
- ``guidance``: ``E = E_0 + w · D`` (``w`` = ``guidance_scale``, default 1) where ``D`` follows
  the product rules on ``D_c = E_c − E_0`` with the anchor ``D_0 = 0`` (so ``~f`` is ``−D[f]``:
  ratio negation). Negated terms may take their own weight and noise levels: ``negation_scale``
  ν multiplies each negated term's weight (``c & ~r`` is ``D[c] − ν·D[r]``) and
  ``negation_sigmas=(lo, hi)`` counts them only at ``lo ≤ σ ≤ hi`` (dropped elsewhere); both
  default to the library's (a trained model's composition), else 1 and every level.
- ``logic``: ``E = E_0 − log P``, ``P(a ∧ b) = P(a)P(b)``, ``P(¬a) = 1 − P(a)``,
  ``P(a ∨ b) = 1 − (1 − P(a))(1 − P(b))``, a term ``(w, sign, body)`` is ``P(body)^w`` or
  ``(1 − P(body))^w``; computed in log space with ``log1mexp(u) = log(1 − e^u)``.

**Mixture weights.** An Or mixes its disjuncts in proportion to their partition functions
``Z_i = ∫ exp(−E_i)``, which are arbitrary for learned heads: with ℓ_i = 0 and τ = 1 disjunct
``i`` gets mass ``Z_i / Σ_j Z_j``. :meth:`ComposedEnergy.calibrate` estimates ``log Z_i / Z_0``
and returns the log-weights that equalise (or set) the proportions.

``semantics=None`` is the library's ``default_semantics`` (a trained model records one), else
``product``.

**Noise levels and scores** (docs/design.md §0). ``E(x, σ)``: leaves whose energies take ``sigma`` are
evaluated at the level given to ``forward``/``score`` (level σ = the data law convolved with
``N(0, σ² I)``); the others ignore it. Heads that give only scores (``kind="score"``) compose
where ``E`` is linear in its concepts (AND, NOT, weights under product or guidance): then
``score = −∇_x E`` is available but ``forward`` is not.

**OR over score-only heads** (docs/design.md §0). No energy of it can be computed, so
``compose`` returns a :class:`MixtureEnergy`: the disjunctive normal form (ANDs distributed over
ORs, ``~(a | b)`` → ``~a & ~b`` by De Morgan under ``product``) gives branches, weighted under
the assumption of equal partition functions (uniform, times ``exp(ℓ)`` of OR log-weights), and
``conceptalg.sample`` draws a branch per chain. An OR over energy values stays exact.

**Modules**, each readable alone, imports one way (top to bottom):

- :mod:`.normalize` — expression → normal form (pure, cached);
- :mod:`.plan` — normal form → flat op list over value slots, and its linear coefficients
  (pure, cached; the ops are frozen records that run tensors);
- :mod:`.semantics` — one object per semantics (product, guidance, logic): what the root,
  the leaves and ``E_0`` mean under it;
- :mod:`.leaves` — resolution: each distinct concept → a :class:`~.leaves.Leaf` (its head and
  arguments);
- :mod:`.calls` — one batched call per model (energies or scores, at a noise level);
- :mod:`.checks` — construction-time errors (semantics, options, base, scores);
- :mod:`.program` — (expression, library, options) → a frozen :class:`~.program.Program`
  (settings, leaves, ops, calls, coefficients): the compiled value;
- :mod:`.printers` — the formula and leaves of a program, as text for humans;
- :mod:`.energy` — :class:`ComposedEnergy`, the ``nn.Module`` that runs a program:
  ``forward(x, sigma)``, ``score(x, sigma)``, ``explain()``;
- :mod:`.dnf` — normal form → disjunctive normal form: the branches of a mixture, and their
  weights (pure, no tensors);
- :mod:`.mixture` — :class:`MixtureEnergy`: one :class:`ComposedEnergy` per branch;
- :mod:`.api` — :func:`compose` (one energy, or a mixture for an OR over score-only heads) and
  :func:`explain`.
"""

from .api import compose, explain
from .dnf import disjuncts
from .energy import ComposedEnergy
from .mixture import MixtureEnergy
from .normalize import SEMANTICS, _normal_form, normal_form  # _normal_form: bench/compose.py
from .plan import log1mexp

__all__ = ["compose", "ComposedEnergy", "MixtureEnergy", "explain", "normal_form", "disjuncts",
           "log1mexp", "SEMANTICS"]

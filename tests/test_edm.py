"""The EDM recipe in one module (:mod:`conceptalg.edm`): its formulas against hand-written
float64 oracles and EDM's own identities, its examples, and each of its numbers written once in
the package."""

from __future__ import annotations

import doctest
import math
import re
from pathlib import Path

import pytest
import torch

from conceptalg import edm

ROOT = Path(__file__).resolve().parents[1]


def test_module_examples_run():
    assert doctest.testmod(edm, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


@pytest.mark.parametrize("sigma_data", [0.2, 0.5, 1.6])
@pytest.mark.parametrize("sigma", [1e-3, 0.1, 1.0, 40.0])
def test_coefficients_and_weight_against_the_hand_formula(sigma, sigma_data):
    s = torch.tensor([sigma], dtype=torch.float64)
    c_skip, c_out, c_in = edm.coefficients(s, sigma_data)
    total = sigma ** 2 + sigma_data ** 2
    assert float(c_skip) == pytest.approx(sigma_data ** 2 / total, rel=1e-12)
    assert float(c_out) == pytest.approx(sigma * sigma_data / math.sqrt(total), rel=1e-12)
    assert float(c_in) == pytest.approx(1 / math.sqrt(total), rel=1e-12)
    # EDM's identities: the weighted target has unit scale, and the input has unit variance
    # for data of scale σ_d: λ(σ) c_out(σ)² = 1 and c_in² (σ² + σ_d²) = 1
    assert float(edm.loss_weight(s, sigma_data) * c_out ** 2) == pytest.approx(1.0, rel=1e-12)
    assert float(c_in ** 2 * total) == pytest.approx(1.0, rel=1e-12)


def test_training_levels_follow_the_shifted_log_normal():
    n = 200_000
    s = edm.training_sigmas(n, torch.Generator().manual_seed(3), 0.25).double().log()
    shift = math.log(0.25 / 0.5)
    se = edm.P_STD / math.sqrt(n)
    assert abs(float(s.mean()) - (edm.P_MEAN + shift)) < 4 * se
    assert abs(float(s.std()) - edm.P_STD) < 4 * edm.P_STD / math.sqrt(2 * n)


def test_karras_levels_against_the_closed_form():
    n, lo, hi = 18, 0.002, 80.0
    got = edm.karras_sigmas(n, lo, hi)
    for i, level in enumerate(got):
        want = (hi ** (1 / 7) + i / (n - 1) * (lo ** (1 / 7) - hi ** (1 / 7))) ** 7
        assert level == pytest.approx(want, rel=1e-9)
    assert edm.sigma_range(0.5) == (edm.SIGMA_MIN, edm.SIGMA_MAX)


def test_each_number_of_the_recipe_is_written_once():
    # the recipe's constants as code (not prose) anywhere in the package but conceptalg/edm.py
    pattern = re.compile(r"(?<![\w.])(0\.002|80\.0|-1\.2|1\.2|7\.0)(?![\w.])")
    hits = []
    for path in sorted((ROOT / "conceptalg").rglob("*.py")):
        if path.name == "edm.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            code = re.sub(r"f?\"[^\"]*\"|f?'[^']*'", "''", line.split("#")[0])  # no strings
            if '"""' in code or code.strip().startswith((">>>", "...")) or "``" in code:
                continue
            if ("sigma" in code or "p_mean" in code or "p_std" in code or "rho" in code) \
                    and pattern.search(code):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not hits, "EDM numbers outside conceptalg/edm.py:\n" + "\n".join(hits)

"""The compiled program as a value (conceptalg/compiler/program.py): frozen, built once per
ComposedEnergy, its pure lowering cached by value, shown by the printers from the program alone,
and one object per semantics."""

import copy
import dataclasses
import pickle

import pytest
import torch

from conceptalg import ConceptLibrary, compose
from conceptalg.compiler.printers import describe
from conceptalg.compiler.program import Program, compile_program
from conceptalg.compiler.semantics import GUIDANCE, LOGIC, PRODUCT, semantics_named
from conceptalg.errors import CompileError

LIB = {"a": lambda x: x.pow(2).sum(-1), "b": lambda x: (x - 1).pow(2).sum(-1)}


def test_a_composed_energy_runs_a_frozen_program():
    energy = compose("a & ~b | b", LIB, or_temperature=0.5)
    program = energy.program
    assert isinstance(program, Program)
    with pytest.raises(dataclasses.FrozenInstanceError):
        program.root = 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        program.ops[0].out = 7
    assert energy.explain() == describe(program)
    assert (energy.semantics, energy.leaves) == ("product", ("a", "b"))


def test_the_lowering_is_cached_and_the_program_is_built_per_energy():
    # two dicts are two libraries: the programs differ, their pure lowering is one value
    p1 = compose("2 * a & ~b", dict(LIB)).program
    p2 = compose("2 * a & ~b", dict(LIB)).program
    assert p1 is not p2 and p1.library is not p2.library
    assert p1.ops is p2.ops


def test_a_changed_library_gives_a_new_program_not_a_stale_one():
    lib = ConceptLibrary(LIB)
    with pytest.raises(CompileError, match="needs a base"):
        compose("~a", lib)
    lib.set_base(lambda x: x.pow(2).sum(-1) / 9)
    x = torch.tensor([[1.0, 2.0]])
    assert torch.allclose(compose("~a", lib)(x), x.pow(2).sum(-1) / 9 - x.pow(2).sum(-1))


@pytest.mark.parametrize("name, obj, expected", [
    ("product", PRODUCT, 2.0),        # E = root
    ("guidance", GUIDANCE, 10 + 3 * 2.0),  # E = E_0 + w·D
    ("logic", LOGIC, 10 - 3 * 2.0),   # E = E_0 − w·log P
], ids=["product", "guidance", "logic"])
def test_one_object_per_semantics(name, obj, expected):
    assert semantics_named(name) is obj
    assert float(obj.energy(torch.tensor(2.0), torch.tensor(10.0), 3.0)) == expected


def test_a_composed_energy_copies_and_its_semantics_stay_one_object():
    energy = compose("a & ~b | b", LIB, or_log_weights={"b": -1.0})
    twin = copy.deepcopy(energy)
    x = torch.randn(5, 2)
    assert torch.equal(twin(x), energy(x))
    assert twin.program.semantics is PRODUCT
    assert pickle.loads(pickle.dumps(GUIDANCE)) is GUIDANCE


def test_compile_program_raises_what_compose_raises():
    with pytest.raises(CompileError, match="guidance_scale applies"):
        compile_program("a", LIB, guidance_scale=2.0)

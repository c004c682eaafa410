"""Arch canonical form, arch_id stability, the registry and the generic search operators."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import raynas
from raynas import ArchError, UnknownSpaceError, arch_id, canonical_json, create_space


def test_canonical_form_sorts_keys_and_lists_tuples():
    a = {"b": (1, 2), "a": {"y": 1.5, "x": [3, (4,)]}}
    assert canonical_json(a) == '{"a":{"x":[3,[4]],"y":1.5},"b":[1,2]}'
    assert arch_id(a) == arch_id(json.loads(canonical_json(a)))
    assert arch_id({"x": 1}) != arch_id({"x": 2})
    with pytest.raises(TypeError):
        canonical_json({"x": float("nan")})


def test_arch_id_is_stable_across_processes():
    arch = {"stages": [{"depth": 2, "kernel": [3, 5]}], "resolution": 32}
    code = ("import raynas, json, sys; "
            "print(raynas.arch_id(json.loads(sys.argv[1])))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(arch)], capture_output=True,
                         text=True, check=True, env={"PYTHONHASHSEED": "123", "PATH": ""},
                         cwd=str(__import__("pathlib").Path(raynas.__file__).parents[1]))
    assert out.stdout.strip() == arch_id(arch)


def test_unknown_space_names_the_available_ones():
    with pytest.raises(UnknownSpaceError) as info:
        create_space("no_such_space")
    assert "no_such_space" in str(info.value) and "synthetic" in str(info.value)


def test_neighbors_change_exactly_one_decision():
    # spec round trip and operator validity of every space: tests/test_space_contract.py
    space = create_space("synthetic", num_layers=6, num_choices=3)
    a = space.sample(np.random.default_rng(0))
    neighbors = space.neighbors(a)
    assert len(neighbors) == 6 * 2
    assert all(sum(x != y for x, y in zip(n["ops"], a["ops"])) == 1 for n in neighbors)


def test_validate_names_field_value_and_allowed():
    space = create_space("synthetic", num_layers=3, num_choices=2)
    with pytest.raises(ArchError) as info:
        space.validate({"ops": [0, 5, 1]})
    msg = str(info.value)
    assert "ops[1]" in msg and "5" in msg and "{0, 1}" in msg
    with pytest.raises(ArchError):
        space.validate({"ops": [0, True, 1]})
    with pytest.raises(ArchError):
        space.validate("not a dict")


def test_same_seed_same_samples():
    space = create_space("synthetic")
    s1 = [space.sample(raynas.derive_rng(3, "step", i)) for i in range(5)]
    s2 = [space.sample(raynas.derive_rng(3, "step", i)) for i in range(5)]
    assert s1 == s2


def test_encode_is_one_hot_per_decision():
    space = create_space("synthetic", num_layers=4, num_choices=3)
    e = space.encode({"ops": [0, 1, 2, 0]})
    assert e.shape == (12,) and e.sum() == 4 and e[0] == 1 and e[4] == 1 and e[8] == 1

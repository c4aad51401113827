"""Every backend provides the contract of pool/backends/base.py."""

import inspect

import pytest

from pool.backends import BACKENDS
from pool.backends.base import Backend

CONTRACT = [name for name, member in vars(Backend).items() if inspect.isfunction(member) and not name.startswith("_")]


def parameters(function):
    return [(p.name, p.default) for p in inspect.signature(function).parameters.values() if p.name != "self"]


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_each_backend_has_every_call_of_the_contract_with_its_parameters(name):
    backend = BACKENDS[name]
    assert CONTRACT
    for call in CONTRACT:
        assert parameters(getattr(backend, call)) == parameters(getattr(Backend, call)), call

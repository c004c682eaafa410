"""The one registry shape (raynas.registry.Registry) and the plug-in kinds that use it."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import raynas
from raynas.errors import ConfigError, UnknownSpaceError
from raynas.registry import SPACES, Registry


def test_register_as_call_and_decorator_then_get_and_describe():
    reg: Registry = Registry("widget")

    @reg.register("b")
    def make_b(x: int = 1) -> int:
        """Makes b.

        More text that is not the description."""
        return x

    assert reg.register("a", len, description="the length") is len
    assert reg.names() == ["a", "b"] and "a" in reg and "c" not in reg
    assert reg.get("b") is make_b
    assert reg.describe() == {"a": "the length", "b": "Makes b."}
    assert reg.create("b", x=3) == 3
    assert reg.module_of("b") == __name__


def test_unknown_name_lists_every_name_and_the_hint():
    reg: Registry = Registry("widget", hint="Add one with register_widget.")
    reg.register("alpha", int)
    reg.register("beta", float)
    with pytest.raises(ConfigError) as info:
        reg.get("gamma")
    assert str(info.value) == ("unknown widget 'gamma'; available: alpha, beta. "
                               "Add one with register_widget.")
    with pytest.raises(ConfigError, match="unknown widget"):
        reg.get(None)  # type: ignore[arg-type]


def test_a_taken_name_needs_replace_but_the_same_object_is_fine():
    reg: Registry = Registry("widget")
    reg.register("a", int)
    reg.register("a", int)
    with pytest.raises(ConfigError, match="widget 'a' is already registered"):
        reg.register("a", float)
    reg.register("a", float, replace=True)
    assert reg.get("a") is float
    with pytest.raises(ConfigError, match="non-empty name"):
        reg.register("", int)


def test_bad_options_name_the_plugin():
    reg: Registry = Registry("widget")
    reg.register("pair", lambda a, b: (a, b))
    with pytest.raises(ConfigError, match="bad options for widget 'pair'"):
        reg.create("pair", a=1, c=2)


def test_lazy_names_are_listed_without_import_and_imported_on_get(tmp_path, monkeypatch):
    module = "raynas_test_lazy_widgets"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(f"""
        import sys
        LAZY = sys.modules[{__name__!r}].LAZY
        @LAZY.register("late")
        class Late:
            '''A widget registered on import.'''
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    LAZY._lazy_source = {"late": module}
    assert LAZY.names() == ["late"] and module not in sys.modules
    assert LAZY.get("late").__name__ == "Late" and module in sys.modules
    assert LAZY.describe() == {"late": "A widget registered on import."}


LAZY: Registry = Registry("lazy widget")


def test_spaces_registry_keeps_its_error_and_lazy_builtins():
    assert isinstance(SPACES, Registry)
    assert raynas.list_spaces() == SPACES.names() and "synthetic" in SPACES.names()
    with pytest.raises(UnknownSpaceError, match="Available spaces: .*synthetic"):
        raynas.create_space("no_such_space")
    # naming a space imports only its family: synthetic must not pull in torch
    code = "import sys, raynas; raynas.create_space('synthetic'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(Path(raynas.__file__).parents[1]))
    assert out.stdout.strip() == "False"


def test_every_plugin_kind_is_one_registry_with_list_and_clear_errors():
    from raynas.differentiable.temperature import SCHEDULES, list_schedules, make_schedule
    from raynas.predictors import PREDICTORS, list_predictors, make_predictor
    from raynas.proxies import list_proxies, proxy_spec
    from raynas.proxies.registry import PROXIES
    from raynas.searchers import STRATEGIES, list_strategies, make_searcher
    from raynas.training.sampling import (SAMPLING_STRATEGIES, list_sampling_strategies,
                                          make_sampling_strategy)

    space = raynas.create_space("synthetic")
    kinds = [(SPACES, raynas.list_spaces, raynas.create_space),
             (STRATEGIES, list_strategies, make_searcher),
             (PROXIES, list_proxies, proxy_spec),
             (PREDICTORS, list_predictors, lambda name: make_predictor(name, space)),
             (SAMPLING_STRATEGIES, list_sampling_strategies, make_sampling_strategy),
             (SCHEDULES, lambda: sorted(list_schedules()), make_schedule)]
    for registry, list_names, make in kinds:
        assert isinstance(registry, Registry)
        names = list_names()
        assert set(registry.names()) <= set(names) and names
        with pytest.raises((ConfigError, UnknownSpaceError)) as info:
            make("no_such_name")
        message = str(info.value)
        assert "no_such_name" in message and all(n in message for n in registry.names()), message

"""What a person sees of the command line: help, usage on mistakes, printed tables, plots, and
no Ray warning line at pool start."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

import raynas
from raynas.cli.main import build_parser, main, subparsers


def _all_parsers(parser, path=("raynas",)):
    yield path, parser
    for name, child in subparsers(parser).items():
        yield from _all_parsers(child, path + (name,))


def test_help_never_says_default_none_and_lists_every_command():
    parser = build_parser()
    top = parser.format_help()
    for command in subparsers(parser):
        assert f"raynas {command}" in top, f"the top-level help does not show 'raynas {command}'"
    for path, p in _all_parsers(parser):
        text = p.format_help()
        assert "(default: None)" not in text, " ".join(path)
        assert "(default: False)" not in text and "(default: True)" not in text, " ".join(path)
        assert text.count("(default:") == len(set(l for l in text.splitlines() if "(default:" in l))


def test_a_wrong_flag_shows_the_subcommands_usage(capsys):
    assert main(["proxies", "validate", "--space", "nb201", "--bogus", "1"]) == 2
    err = capsys.readouterr().err
    assert "usage: raynas proxies validate" in err and "unrecognized arguments: --bogus 1" in err
    assert main(["search", "--n-archs", "3"]) == 2
    assert "usage: raynas search" in capsys.readouterr().err


def test_documented_spellings_parse():
    parser = build_parser()
    assert parser.parse_args(["proxies", "validate", "--space", "nb201", "-n", "200"]).num_archs == 200
    args = parser.parse_args(["specialize", "--checkpoint", "c", "--latency-table", "t", "--latency", "15,20",
                              "--latency", "30"])
    assert args.latency == [15.0, 20.0, 30.0] and args.checkpoint == "c"
    assert parser.parse_args(["specialize", "--supernet", "c", "--latency", "1"]).checkpoint == "c"


def test_ofa_notation_is_explained(capsys):
    assert main(["spaces", "ofa_mbv3_cifar"]) == 0
    out = capsys.readouterr().out
    assert "notation" in out and "r<resolution> d<depth" in out and "in tables: r24 d22222" in out


def test_tables_show_whole_archs_and_requested_columns(ray_session, tmp_path, capsys):
    from conftest import shared_data_path

    table = shared_data_path("nb201/nb201_cifar10.csv")
    assert main(["search", "--space", "nb201", "--table", str(table), "--table-metric", "accuracy=c10valid_valid_12ep",
                 "--table-metric", "test_accuracy=c10_test_200ep", "-n", "12", "--strategy", "random",
                 "--output", str(tmp_path), "--name", "t", "--top", "12", "--no-tensorboard"]) == 0
    out = capsys.readouterr().out
    df = raynas.SearchResult.load(tmp_path / "t").df
    header = [line for line in out.splitlines() if line.startswith("arch_id")][0]
    assert "test_accuracy" in header and "accuracy" in header
    for arch in df["arch"]:
        arch_str = raynas.create_space("nb201").describe(json.loads(arch))
        assert arch_str in out   # whole, never cut
    assert str(df["finished_at"].dtype) == "datetime64[ns, UTC]"


def test_pareto_plot_draws_the_constraint_and_uses_units(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.axes import Axes

    from raynas.objectives import parse_objectives
    from raynas.results import SearchResult

    drawn, labels = [], {}
    monkeypatch.setattr(Axes, "axvline", lambda self, x, **kw: drawn.append(("v", x, kw.get("label"))))
    monkeypatch.setattr(Axes, "set_xlabel", lambda self, text, **kw: labels.__setitem__("x", text))
    df = pd.DataFrame({"arch_id": list("abcd"), "arch": ["{}"] * 4, "accuracy": [50.0, 60.0, 55.0, 70.0],
                       "macs": [10e6, 20e6, 30e6, 45e6], "error": [None] * 4})
    result = SearchResult(df, parse_objectives(["accuracy:max", "macs:min"]), tmp_path,
                          {"name": "p", "constraints": ["macs <= 4e+07"]})
    assert result.plot_pareto().stat().st_size > 1000
    assert drawn == [("v", 40.0, "macs <= 4e+07")]   # in millions, like the axis
    assert labels["x"].startswith("MACs (M)")


def test_pool_start_prints_no_ray_error_line(tmp_path):
    """Ray logs an ERROR line when a restartable actor's constructor arguments hold ObjectRefs;
    the pool keeps its factory's references out of the dispatcher's constructor."""
    (tmp_path / "refs_factory.py").write_text(textwrap.dedent('''
        import ray
        from raynas.evaluators.synthetic import SleepEvaluator
        def make(ref):   # runs in the pool's worker: the reference arrives as it was given
            return SleepEvaluator(ray.get(ref))
        '''))
    script = textwrap.dedent('''
        import functools, ray
        import raynas, refs_factory
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
        pool = raynas.SupernetPool(functools.partial(refs_factory.make, ray.put(0.0)), num_actors=1)
        pool.wait_ready(progress=False)
        print(pool.evaluate([{"ops": [0] * 8}]))
        pool.shutdown()
        ray.shutdown()
        ''')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in [str(tmp_path), os.environ.get("PYTHONPATH")] if p))
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "score" in done.stdout
    assert "constructor arguments in the object store" not in done.stderr

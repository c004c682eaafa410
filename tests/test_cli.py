"""The command line: help texts, listing spaces, and one clear error per bad input."""
from __future__ import annotations

import pytest

from raynas.cli.main import build_parser, main


def test_every_command_has_help(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse internals
    assert {"demo", "spaces", "train", "search", "export"} <= set(commands)
    for name in commands:
        assert main([name, "--help"]) == 0   # argparse's exit becomes main's return code
        assert len(capsys.readouterr().out) > 200


def test_spaces_lists_and_describes(capsys):
    assert main(["spaces"]) == 0
    listing = capsys.readouterr().out
    assert "ofa_mbv3_cifar" in listing and "synthetic" in listing
    assert main(["spaces", "ofa_mbv3_cifar", "-o", "width_mult=0.5"]) == 0
    assert "s0.b0.kernel" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needle", [
    (["spaces", "no_such_space"], "unknown search space 'no_such_space'"),
    (["export", "--checkpoint", "/nonexistent/ckpt", "--arch", "{}", "--output", "x"], "/nonexistent/ckpt"),
    (["train", "--space", "ofa_mbv3_cifar", "--data", "cifar10:/nonexistent/cifar", "--epochs", "1"],
     "/nonexistent/cifar"),
    (["search", "--table", "t.csv", "--checkpoint", "c"], "exactly one evaluator"),
])
def test_bad_input_gives_one_clear_error(argv, needle, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and err.count("error:") == 1

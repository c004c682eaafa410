"""Docs are tests: every command and Python block of README.md and docs/*.md runs here on tiny
data and budgets, or is parsed with raynas's own parser (see tests/docs_runner.py for the rules
and the complete list of substitutions)."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import raynas

from docs_runner import (DOCUMENTS, KNOWN_PROGRAMS, PROJECT_ROOT, Block, argv_of, blocks, command_lines,
                         makefile_targets, raynas_argv, substitute)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: the offline data a reader of the docs has beside them, under the names the docs use
DOC_DATA = {"nb201_cifar10.csv": "nb201/nb201_cifar10.csv", "nb201_latency.csv": "hw/nb201_latency.csv",
            "note10_lut": "ofa/note10_latency_lut"}
#: a Python block that must not need raynas runs after this prelude, in a fresh interpreter
NO_RAYNAS_PRELUDE = textwrap.dedent('''\
    import importlib.abc, sys
    class _NoRaynas(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("raynas", "spaces", "trainables"):
                raise ImportError(f"{name} was imported by a block that must work without raynas")
            return None
    sys.meta_path.insert(0, _NoRaynas())
    ''')


def _all_blocks():
    return [b for d in DOCUMENTS for b in blocks(d) if b.language not in ("text", "yaml", "json")]


# --------------------------------------------------------------------------------- parse checks
def _parse_raynas(argv, where: str) -> None:
    from raynas.cli.main import _deepest_parser, build_parser

    argv = [a for a in argv if a != "..."]   # "more flags" in prose
    parser = build_parser()
    err = io.StringIO()
    try:
        from contextlib import redirect_stderr

        with redirect_stderr(err):
            args, extra = parser.parse_known_args(argv)
            if extra:
                _deepest_parser(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit:
        pytest.fail(f"{where}: 'raynas {' '.join(argv)}' does not parse: {err.getvalue().strip().splitlines()[-1]}")
    assert getattr(args, "handler", None) is not None, f"{where}: 'raynas {' '.join(argv)}' names no command"


def _check_command(line: str, where: str) -> None:
    argv = argv_of(line)
    inner = raynas_argv(argv)
    if inner is not None:
        _parse_raynas(inner, where)
    elif argv[0] == "make":
        missing = [t for t in argv[1:] if not t.startswith("-") and t not in makefile_targets()]
        assert not missing, f"{where}: make target(s) {missing} are not in the Makefile"
    else:
        assert argv[0] in KNOWN_PROGRAMS, f"{where}: '{argv[0]}' is not a program the docs may name ({line})"


@pytest.mark.parametrize("block", _all_blocks(), ids=lambda b: b.where)
def test_every_block_parses(block: Block):
    """Every command of every block (run or not) names real flags of real commands, every Python
    block compiles; blocks in a language the suite cannot check must say so."""
    if block.language == "python":
        compile(block.text, block.where, "exec")
        return
    assert block.language in ("bash", "sh", ""), \
        f"{block.where}: a ```{block.language} block cannot be checked; use bash, python or text"
    for line in command_lines(block.text, synopsis=not block.language):
        _check_command(line, block.where)


def test_docs_name_their_blocks_modes():
    """The modes are the runner's: a typo in a marker would silently run or skip a block."""
    for document in DOCUMENTS:
        text = (PROJECT_ROOT / document).read_text(encoding="utf-8")
        for marker in __import__("re").findall(r"<!--\s*docs-test:\s*(\S+)", text):
            assert marker in ("run", "parse", "no-raynas"), f"{document}: unknown docs-test mode {marker!r}"


# --------------------------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def shared_data():
    from conftest import shared_data_path

    return {name: shared_data_path(rel) for name, rel in DOC_DATA.items()}


def _scratch(tmp_path: Path, shared_data) -> Path:
    """The reader's folder: the offline data under the docs' names and an (untrained)
    ofa_mbv3_cifar supernet at runs/ofa/checkpoint for docs that start from one."""
    from raynas import create_space
    from raynas.checkpoint import save_supernet_checkpoint

    for name, source in shared_data.items():
        (tmp_path / name).symlink_to(source)
    space = create_space("ofa_mbv3_cifar")
    save_supernet_checkpoint(tmp_path / "runs" / "ofa" / "checkpoint", space.build_supernet(10),
                             {"num_classes": 10, "dataset": "digits"})
    return tmp_path


def _run_block(block: Block, folder: Path, namespace: dict) -> None:
    from raynas.cli.main import main

    if block.mode == "no-raynas":
        script = NO_RAYNAS_PRELUDE + substitute(block.text)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        done = subprocess.run([sys.executable, "-c", script], cwd=folder, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, f"{block.where} failed without raynas:\n{done.stderr[-3000:]}"
        return
    if block.language == "python":
        import raynas

        try:
            exec(compile(substitute(block.text), block.where, "exec"), namespace)   # noqa: S102 - our own docs
        finally:   # the pools its process would have taken down when it ended
            for key, value in list(namespace.items()):
                if isinstance(value, raynas.SupernetPool):
                    value.shutdown()
                    del namespace[key]
        return
    for line in command_lines(block.text):
        line = substitute(line)
        argv = argv_of(line)
        if argv[0] == "raynas":
            code = main(argv[1:])
            assert code == 0, f"{block.where}: '{line}' exited {code}"
        else:   # other programs and make targets are only parsed (see docs_runner)
            _check_command(line, block.where)


# the README is the whole walk-through (train a demo supernet, search, specialize, export): minutes
# on a loaded 2-core machine, more than the suite's per-test default
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("document", DOCUMENTS)
def test_document_runs(document, ray_session, shared_data, tmp_path, monkeypatch):
    """A reader who runs every block of the document in order, in one folder, sees each work."""
    folder = _scratch(tmp_path, shared_data)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("RAYNAS_CACHE", str(tmp_path / "cache"))
    ran = 0
    namespace = {"__name__": "__docs__"}   # one Python session per document, as a reader's
    try:
        for block in blocks(document):
            if block.mode in ("run", "no-raynas") and block.language in ("bash", "sh", "python"):
                _run_block(block, folder, namespace)
                ran += 1
    finally:
        # a block that fails mid-way leaves the pools it opened: they would hold the session's
        # CPUs and every later pool would wait for them
        for value in namespace.values():
            if isinstance(value, raynas.SupernetPool):
                value.shutdown()
    assert ran or document != "README.md"

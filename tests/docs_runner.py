"""Docs are tests: the code blocks of README.md and docs/*.md, found, classified and run.

Every fenced block of a document is one of:

- **run** (the default): a ``bash`` block's commands run one by one in a scratch folder (``raynas``
  commands in this process, through ``raynas.cli.main.main``; ``make demo`` as the ``raynas demo``
  it runs), a ``python`` block is executed there; blocks of one document share the folder and
  one Python namespace, in order, as a reader running them one after another would.
- **parse**: marked ``<!-- docs-test: parse (why) -->`` on the line before it (commands that need
  a GPU, a cluster, the network, or that are this test suite). Each ``raynas`` command in it --
  also inside ``ray submit ... examples/raynas_cli.py ARGS`` and ``ray job submit ... -- raynas
  ARGS`` -- must parse with raynas's own parser (every flag exists, every value has the right
  type); ``make`` targets must exist in the Makefile; other programs must be ones the docs are
  allowed to name (:data:`KNOWN_PROGRAMS`); a Python block must compile.
- **no-raynas**: ``<!-- docs-test: no-raynas -->``: a Python block that must work without raynas
  (the timm loader): it runs in a fresh interpreter in which importing raynas, spaces or
  trainables fails.
- A block without a language (a synopsis such as the README's command list) is parsed like a
  ``parse`` block, with placeholders: text after two or more spaces is a description, ``[...]``
  is optional.

Runs use tiny data and budgets. The scratch folder holds the offline data under the names the
docs use (``nb201_cifar10.csv``, ``nb201_latency.csv``, ``note10_lut/``) and an untrained
``ofa_mbv3_cifar`` supernet at ``runs/ofa/checkpoint``; :data:`SUBSTITUTIONS` lists every textual
change made to a block before it runs, and nothing else is changed. Pools a Python block leaves
running are shut down after it, as its process ending would.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ["README.md", *sorted(str(p.relative_to(PROJECT_ROOT)) for p in (PROJECT_ROOT / "docs").glob("*.md"))]

#: programs other than raynas and make that the docs may tell a user to run (parsed, never run)
KNOWN_PROGRAMS = {"ray", "pip", "tensorboard", "python", "unshare", "chromium", "export"}

#: (regular expression, replacement) applied, in order, to every block that runs: tiny data and
#: budgets for the suite; the commands' meaning is otherwise unchanged
SUBSTITUTIONS: List[Tuple[str, str]] = [
    # `make demo` is `raynas demo`: two training steps, six archs, one actor, and no network
    # trained alone beside the supernet (tests/test_demo.py runs that part and checks its row;
    # here its Ray worker's start and evaluation only cost the suite time)
    (r"^make demo\b.*$", "raynas demo --max-steps 2 -n 6 --actors 1 --no-alone"),
    # the CIFAR-10 a user points at -> the embedded digits (CIFAR-10 loading itself is tested in
    # tests/test_data.py; a full CIFAR validation split per arch would cost minutes here)
    (r"cifar10:(/data/cifar10|DIR|/data/cifar-10-batches-py)", "digits"),
    # budgets: archs, epochs, steps, samples
    (r"(-n|--num-samples|--num-archs) (\d{2,})", r"\1 6"),
    (r"num_samples=(\d{2,})", "num_samples=6"),
    # a DARTS search: 4 channels, one cell per stage, 2 steps on 32 images per half
    (r'("space": "nb201", "data": "digits", "epochs": )\d+,',
     r'\g<1>1, "max_steps_per_epoch": 2, "batch_size": 8, "half_size": 32, '
     r'"supernet_options": {"channels": 4, "cells_per_stage": 1},'),
    # a supernet: 2 steps of 16 images
    (r'"epochs": (\d{2,}),', '"epochs": 1, "max_steps": 2, "batch_size": 16,'),
    (r'"seed": \[0, 1, 2\]', '"seed": [0]'),
    # the suite has no GPU: a trial asking for a share of one would wait for it forever
    (r"gpus_per_trial=0\.\d+", "gpus_per_trial=0"),
    # specialize: a few measured archs and predictor queries; targets every table can meet
    (r"^(raynas specialize .*)$", r"\1 --fit-samples 8 --holdout 4 --search-samples 40 --verify-top 1"),
    (r"--latency 4,6\b", "--latency 1000,2000"),
    # latency limits of the demo space depend on this machine's speed: one any machine meets
    (r"latency_ms<=5\b", "latency_ms<=1000"),
    # the PreNAS selector's data-free batch
    (r"(raynas proxies select .*)$", r"\1 --batch-size 2"),
]


@dataclass
class Block:
    document: str
    line: int             # 1-based line of the opening fence
    language: str         # "bash", "python", "" (none), ...
    mode: str             # "run" | "parse" | "no-raynas"
    reason: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line}"


_FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
_MARKER = re.compile(r"<!--\s*docs-test:\s*(run|parse|no-raynas)\b\s*(.*?)\s*-->")


def blocks(document: str) -> List[Block]:
    """The fenced code blocks of ``document`` (a path relative to the project root), in order."""
    lines = (PROJECT_ROOT / document).read_text(encoding="utf-8").splitlines()
    out: List[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, language = m.group(1), m.group(2)
        start, body = i, []
        i += 1
        while i < len(lines) and not re.match(rf"^{re.escape(indent)}```\s*$", lines[i]):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        marker = _marker_before(lines, start)
        mode, reason = marker if marker else (("parse", "synopsis") if not language else ("run", ""))
        out.append(Block(document, start + 1, language, mode, reason, "\n".join(body) + "\n"))
    return out


def _marker_before(lines: Sequence[str], fence: int) -> Optional[Tuple[str, str]]:
    j = fence - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    m = _MARKER.search(lines[j]) if j >= 0 else None
    return (m.group(1), m.group(2).strip("() ")) if m else None


def substitute(text: str) -> str:
    """``text`` with :data:`SUBSTITUTIONS` applied (line by line for anchored patterns)."""
    for pattern, replacement in SUBSTITUTIONS:
        text = re.sub(pattern, replacement, text, flags=re.MULTILINE)
    return text


def command_lines(text: str, synopsis: bool = False) -> List[str]:
    """The shell commands of a bash block, one string each: continuation lines joined, comment
    lines dropped. ``synopsis``: text after 2+ spaces is a description, ``[...]`` optional."""
    out: List[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line = (pending + line.strip()) if pending else line.strip()
        pending = ""
        if synopsis:
            line = re.sub(r"\[[^\]]*\]", "", re.split(r"\s{2,}", line)[0]).strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def argv_of(line: str) -> List[str]:
    """A command line as argv (shell comments and a trailing ``&`` dropped)."""
    argv = shlex.split(line, comments=True)
    return argv[:-1] if argv and argv[-1] == "&" else argv


def raynas_argv(argv: Sequence[str]) -> Optional[List[str]]:
    """The raynas arguments inside a command line, or None when it runs no raynas command:
    ``raynas ARGS``, ``ray submit CFG examples/raynas_cli.py ARGS``, ``ray job submit ... -- raynas ARGS``."""
    argv = list(argv)
    if argv[0] == "raynas":
        return argv[1:]
    if argv[:2] == ["ray", "submit"] and any(a.endswith("raynas_cli.py") for a in argv):
        return argv[next(i for i, a in enumerate(argv) if a.endswith("raynas_cli.py")) + 1:]
    if argv[:3] == ["ray", "job", "submit"] and "--" in argv:
        rest = argv[argv.index("--") + 1:]
        return rest[1:] if rest and rest[0] == "raynas" else None
    return None


def makefile_targets() -> set:
    text = (PROJECT_ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, flags=re.MULTILINE))

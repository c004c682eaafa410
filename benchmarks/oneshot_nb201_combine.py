"""Recompute a ``oneshot_nb201.py`` record from its per-arch CSV, and combine every supernet
column (not only the first variant's) with the zero-cost ensemble.

The benchmark combines the proxies with its *first* variant's score only; which variant ranks
best is known only after the run. This reads the ``*_archs.csv`` the benchmark wrote (one row
per arch: ``c10_test_200ep``, ``inherited_<variant>``, ``loss_<variant>``, the proxies and
``proxy_ensemble``) and reports Kendall τ, Spearman ρ and top-10 % precision of each column
and of each supernet column rank-averaged with the proxy ensemble. Nothing is trained or
evaluated: it takes a second.

    python benchmarks/oneshot_nb201_combine.py benchmarks/results/oneshot_nb201_cpu_archs.csv \
        --out oneshot_nb201_cpu_combined.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, write_report  # noqa: E402
from benchmarks.oneshot_nb201 import TRUTH, ranking  # noqa: E402


def supernet_columns(columns: Sequence[str]) -> Dict[str, str]:
    """Estimator name -> CSV column, for every variant's accuracy and validation loss."""
    out = {}
    for column in columns:
        if column.startswith("inherited_"):
            out[f"supernet {column[len('inherited_'):]} (accuracy)"] = column
        elif column.startswith("loss_"):
            out[f"supernet {column[len('loss_'):]} (loss)"] = column
    return out


def combine(csv_path: Path) -> Dict[str, Any]:
    """Every estimator's ranking against the table, alone and rank-averaged with the proxies."""
    import pandas as pd

    from raynas.proxies import rank_ensemble

    rows = pd.read_csv(csv_path)
    if TRUTH not in rows or "proxy_ensemble" not in rows:
        raise SystemExit(f"{csv_path} has no '{TRUTH}' or 'proxy_ensemble' column: pass the *_archs.csv "
                         "of a oneshot_nb201.py run made with proxies")
    truth = rows[TRUTH].tolist()
    report: Dict[str, Any] = {"benchmark": "oneshot_nb201_combine", "source_csv": csv_path.name,
                              "num_archs": len(rows), "truth": TRUTH, "alone": {}, "with_proxy_ensemble": {}}
    report["alone"]["proxy ensemble"] = ranking(rows["proxy_ensemble"].tolist(), truth)
    for name, column in supernet_columns(rows.columns).items():
        # a lower validation loss is a better arch: rank by its negative
        score = (-rows[column] if column.startswith("loss_") else rows[column]).tolist()
        report["alone"][name] = ranking(score, truth)
        both = rank_ensemble({"supernet": score, "proxies": rows["proxy_ensemble"].tolist()})
        report["with_proxy_ensemble"][name] = ranking(both.tolist(), truth)
    return report


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("csv", help="the *_archs.csv a oneshot_nb201.py run wrote")
    p.add_argument("--out", default=None, help="JSON report (a bare name goes to benchmarks/results/)")
    args = p.parse_args(argv)
    csv_path = Path(args.csv)
    if not csv_path.is_file():
        raise SystemExit(f"{csv_path} not found: pass the *_archs.csv of a oneshot_nb201.py run")
    report = combine(csv_path)
    report["command"] = "python benchmarks/oneshot_nb201_combine.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"{'estimator':34s} {'alone τ':>8s} {'ρ':>6s} {'top10':>6s}   {'+ proxies τ':>11s} {'ρ':>6s} {'top10':>6s}")
    for name, alone in report["alone"].items():
        line = f"{name:34s} {alone['kendall_tau']:8.3f} {alone['spearman_rho']:6.3f} {alone['top10_precision']:6.2f}"
        both = report["with_proxy_ensemble"].get(name)
        if both:
            line += f"   {both['kendall_tau']:11.3f} {both['spearman_rho']:6.3f} {both['top10_precision']:6.2f}"
        print(line)
    if args.out:
        out = Path(args.out)
        write_report(str(out if out.parent != Path(".") else RESULTS / out), report)
    return report


if __name__ == "__main__":
    main()

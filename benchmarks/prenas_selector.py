"""PreNAS zero-cost selector on the Tiny AutoFormer space: candidates per 1M-parameter bucket.

One data-free forward/backward pass of the randomly initialised supernet at its largest arch
(64 images drawn from the ImageNet mean / std, sum-of-logits objective), Algorithm 1 per isomer
group (layer-normalised SNIP), plain SNIP ranking, top N per parameter bucket. The wall time
covers everything from building the space to the written candidates file; ``process_seconds``
adds the imports (torch, timm) of a fresh process.

    python benchmarks/prenas_selector.py --device cpu --threads 1        # ~1 min on 1 CPU core
    python benchmarks/prenas_selector.py --smoke                         # tiny ViT, seconds

Writes benchmarks/results/prenas_selector_<device>.json (the candidates with params and score,
the timing, the command) and, with --candidates, the candidates JSON preferred training reads.
"""
from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

_PROCESS_START = time.perf_counter()  # before torch / raynas imports: the whole run is timed
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from raynas.io import atomic_write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SMOKE_SPACE = {"embed_dims": [16, 24], "depths": [2, 3], "num_heads": [1, 2], "mlp_ratios": [1.0, 2.0],
               "head_dim": 8, "img_size": 16, "patch_size": 8, "num_classes": 5}


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="autoformer_tiny", help="a ViT space with an isomer structure")
    p.add_argument("--buckets", default="5M:11M:1M", help="start:stop:step of the parameter buckets")
    p.add_argument("--per-bucket", type=int, default=1, help="candidates kept per bucket")
    p.add_argument("--batch-size", type=int, default=64, help="data-free images in the supernet pass")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--budget-s", type=float, default=120.0,
                   help="wall-time budget; the report says whether the run stayed inside it")
    p.add_argument("--machine", default=None, help="machine description recorded in the report")
    p.add_argument("--out", default=None, help="report JSON (default benchmarks/results/prenas_selector_<device>.json)")
    p.add_argument("--candidates", default=None, help="also write the candidates JSON here")
    p.add_argument("--smoke", action="store_true", help="a tiny ViT space on CPU, seconds")
    return p.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    command = "python benchmarks/prenas_selector.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    from raynas.registry import create_space
    from raynas.selectors import PreNASSelector, ResourceBuckets

    if args.smoke:
        space = create_space("vit", **SMOKE_SPACE)
        low, high = space.cost(space.smallest())["params"], space.cost(space.largest())["params"]
        buckets = ResourceBuckets.covering(low, high, 2000.0)
        batch_size = min(args.batch_size, 4)
    else:
        space = create_space(args.space)
        buckets = ResourceBuckets.parse(args.buckets)
        batch_size = args.batch_size
    selector = PreNASSelector(space, batch_size=batch_size, seed=args.seed, device=args.device)
    selection = selector.select(buckets, args.per_bucket)
    if args.candidates:
        selection.write(args.candidates)
    wall = time.perf_counter() - start

    print(selection.table())
    print(f"\n{len(selection.candidates)} candidates from {len(selection.representatives)} isomer groups "
          f"in {wall:.1f} s (supernet pass {selection.seconds.get('supernet_pass', 0):.1f} s)", flush=True)
    device = torch.device(args.device)
    machine = args.machine or (torch.cuda.get_device_name(device) if device.type == "cuda"
                               else f"{os.cpu_count()}-core CPU ({platform.machine()})")
    report = {
        "benchmark": "prenas_selector", "smoke": bool(args.smoke), "command": command,
        "machine": machine, "device": str(device), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "space": space.spec(), "batch_size": batch_size, "seed": args.seed,
        "buckets": buckets.to_dict(), "per_bucket": args.per_bucket,
        "num_isomer_groups": len(selection.representatives),
        "wall_seconds": wall, "process_seconds": time.perf_counter() - _PROCESS_START,
        "seconds": dict(selection.seconds),
        "budget_s": args.budget_s, "within_budget": wall <= args.budget_s,
        "bucket_summary": selection.bucket_summary(),
        "candidates": [{"bucket": buckets.label(c.bucket), "rank": c.rank, "params": c.params, "flops": c.flops,
                        "score": c.score, "isomer_score": c.isomer_score, "arch_id": c.arch_id, "arch": c.arch}
                       for c in selection.candidates],
    }
    suffix = "smoke" if args.smoke else device.type
    out = Path(args.out) if args.out else RESULTS / f"prenas_selector_{suffix}.json"
    atomic_write_json(out, report)
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()

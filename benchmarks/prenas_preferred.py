"""PreNAS preferred one-shot training vs uniform single-path training, on the archs the zero-cost
selector prefers (issue 20; PreNAS, Wang et al., ICML 2023, Fig. 4: "preferred & pre-selector"
beats "redundant & pre-selector" by about 0.5% top-1 per subnet on ImageNet).

1. The selector (one data-free pass of the untrained supernet; layer-normalised SNIP per isomer
   group, plain SNIP per parameter bucket) picks ``--per-bucket`` archs per bucket of
   ``--bucket-step`` parameters: the candidates (written to ``<out>_candidates.json``).
2. Two supernets train from the same initialisation for the same number of steps with the same
   recipe: ``preferred`` (only the candidates, balanced over (embed dim, depth) groups) and
   ``uniform`` (one random subnet of the whole space per step: AutoFormer's single-path
   training, "redundant" in PreNAS' words).
3. Every candidate, and ``--random-archs`` random archs of the space as a non-preferred
   reference, is scored by weight-inherited accuracy (held-out validation split, test set)
   under each supernet.

The space is AutoFormer-Tiny's (depth 12-14, 3 or 4 heads, MLP ratio 3.5 or 4 per layer, three
embed dims) with every width divided by 4 (embed {48, 54, 60}, head dim 16), on CIFAR-10 at
16x16 with 4x4 patches, so a training step costs about 0.2 s on one CPU core.

    # CPU protocol (recorded at --steps 2000 --seeds 0,1,2: benchmarks/results/prenas_preferred_cpu16.json, BENCHMARKS.md)
    OMP_NUM_THREADS=1 python benchmarks/prenas_preferred.py --device cpu --threads 1 --steps 4000 \
        --out benchmarks/results/prenas_preferred_cpu16.json
    # GPU: the full Tiny space on 32x32 CIFAR-10 (patch 2)
    python benchmarks/prenas_preferred.py --device cuda --image-size 32 --space autoformer_tiny \
        --space-options '{"img_size": 32, "patch_size": 2, "num_classes": 10}' --bucket-step 1M --steps 20000
    python benchmarks/prenas_preferred.py --smoke        # digits, tiny ViT, seconds

Trainings run one after another in this process and the report is saved after each
(``--resume`` continues). Writes the JSON (per-arch accuracies under both trainings) and
``<out>_archs.csv`` (one row per arch, seed and training), atomically.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import (RESULTS, add_run_arguments, environment, inherited_evaluators,  # noqa: E402
                               previous_report, resolve_data_spec, setup_device, steps_per_epoch,
                               training_config, write_report)

#: AutoFormer-Tiny with every width / 4, for 16x16 images (4x4 patches: 16 tokens + cls)
TINY_CPU = dict(embed_dims=[48, 54, 60], depths=[12, 13, 14], num_heads=[3, 4], mlp_ratios=[3.5, 4.0],
                supernet_embed_dim=64, supernet_depth=14, supernet_num_heads=4, supernet_mlp_ratio=4.0,
                head_dim=16, img_size=16, patch_size=4, num_classes=10)
SMOKE_SPACE = dict(embed_dims=[16, 24], depths=[2, 3], num_heads=[1, 2], mlp_ratios=[1.0, 2.0],
                   head_dim=8, img_size=16, patch_size=8, num_classes=10)
TRAININGS = ("preferred", "uniform")


def pick_random_archs(space, count: int, exclude: List[str], seed: int) -> List[Dict[str, Any]]:
    """``count`` distinct random archs of the space that are not candidates."""
    from raynas.arch import arch_id
    from raynas.rng import derive_rng

    rng = derive_rng(seed, "reference-archs")
    seen, out = set(exclude), []
    for _ in range(100 * max(count, 1)):
        if len(out) == count:
            break
        arch = space.sample(rng)
        if arch_id(arch) not in seen:
            seen.add(arch_id(arch))
            out.append(arch)
    return out


def train_and_score(kind: str, seed: int, base: Dict[str, Any], candidates: List[Dict[str, Any]],
                    references: List[Dict[str, Any]], dataset, args: argparse.Namespace,
                    device: torch.device) -> Dict[str, Any]:
    """Train one supernet (``preferred`` on the candidates or ``uniform``) and score every arch."""
    from raynas.arch import arch_id
    from raynas.training import SupernetTrainConfig
    from trainables.supernet import SupernetTrainer

    sampler = ({"sampler": "preferred", "sampler_options": {"candidates": candidates}} if kind == "preferred"
               else {"sampler": "uniform", "sampler_options": {}})
    trainer = SupernetTrainer(SupernetTrainConfig.from_any(dict(base, seed=seed, epochs=args.epochs, **sampler)),
                              dataset)

    def progress(tr: SupernetTrainer) -> None:
        if args.progress_every and tr.step % args.progress_every == 0:
            print(f"  [{kind} seed {seed}] step {tr.step}/{tr.stop_step}", flush=True)

    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(callback=progress)
    train_s, train_cpu_s = time.perf_counter() - wall, time.process_time() - cpu
    net = trainer.module
    on_val, on_test = inherited_evaluators(
        net, dataset, device, min(len(dataset.split("calib")), args.calib_batches * args.eval_batch), args.eval_batch)
    archs = [("candidate", a) for a in candidates] + [("random", a) for a in references]
    val = on_val.evaluate([a for _, a in archs])
    test = on_test.evaluate([a for _, a in archs])
    scored = [{"arch_id": arch_id(a), "role": role, "val": v["accuracy"], "test": t["accuracy"]}
              for (role, a), v, t in zip(archs, val, test)]
    return {"training": kind, "seed": seed, "steps": trainer.step, "train_s": train_s, "train_cpu_s": train_cpu_s,
            "loss_per_epoch": [{"epoch": h["epoch"], "step": h["step"], "train_loss": h["train_loss"]}
                               for h in trainer.history], "archs": scored}


def summarise(trainings: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Means per training and role; per seed, candidate by candidate, preferred minus uniform."""
    out: Dict[str, Any] = {}
    for kind in TRAININGS:
        runs = [t for t in trainings if t["training"] == kind]
        if runs:
            out[kind] = {role: {split: float(np.mean([a[split] for t in runs for a in t["archs"] if a["role"] == role]))
                                for split in ("val", "test")}
                         for role in ("candidate", "random")}
    pairs = []
    for seed in sorted({t["seed"] for t in trainings}):
        by = {t["training"]: t for t in trainings if t["seed"] == seed}
        if set(by) != set(TRAININGS):
            continue
        uni = {a["arch_id"]: a for a in by["uniform"]["archs"]}
        for a in by["preferred"]["archs"]:
            if a["role"] == "candidate":
                pairs.append({"seed": seed, "arch_id": a["arch_id"], "preferred_test": a["test"],
                              "uniform_test": uni[a["arch_id"]]["test"],
                              "gain": a["test"] - uni[a["arch_id"]]["test"]})
    if pairs:
        gains = [p["gain"] for p in pairs]
        out["candidate_gain"] = {"mean": float(np.mean(gains)), "min": float(np.min(gains)),
                                 "max": float(np.max(gains)), "wins": sum(g > 0 for g in gains),
                                 "pairs": len(gains), "per_candidate": pairs}
    return out


def write_arch_csv(path: Path, trainings: List[Dict[str, Any]]) -> None:
    from raynas.io import atomic_write_text

    lines = ["training,seed,role,arch_id,val,test"]
    for t in trainings:
        lines += [f"{t['training']},{t['seed']},{a['role']},{a['arch_id']},{a['val']:.4f},{a['test']:.4f}"
                  for a in t["archs"]]
    atomic_write_text(path, "\n".join(lines) + "\n")


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    add_run_arguments(parser, space="vit", space_options=json.dumps(TINY_CPU), batch_size=128, lr=1e-3,
                      out=str(RESULTS / "prenas_preferred.json"),
                      smoke_help="digits, a tiny ViT, CPU (seconds)", resumable=True)
    parser.add_argument("--image-size", type=int, default=16, help="images resized once to this side")
    parser.add_argument("--bucket-step", default="50k", help="width of the parameter buckets (e.g. 50k, 1M)")
    parser.add_argument("--per-bucket", type=int, default=1, help="candidates kept per bucket")
    parser.add_argument("--selector-batch", type=int, default=64, help="data-free images in the selector pass")
    parser.add_argument("--random-archs", type=int, default=10, help="non-preferred reference archs scored too")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--steps", type=int, default=4000, help="training steps of each supernet")
    parser.add_argument("--warmup-epochs", type=float, default=0.5)
    parser.add_argument("--calib-batches", type=int, default=4)
    parser.add_argument("--progress-every", type=int, default=500, help="steps between progress lines (0: none)")
    args = parser.parse_args(argv)
    options = json.loads(args.space_options)
    data, data_options = resolve_data_spec(args.data), {"image_size": args.image_size}
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if args.smoke:
        args.device, args.batch_size, args.calib_batches, args.eval_batch = "cpu", 32, 1, 128
        args.steps, args.random_archs, args.selector_batch, args.progress_every = 6, 2, 4, 0
        args.threads, args.bucket_step, seeds = args.threads or 1, "2k", seeds[:1]
        data, data_options, options = "digits", {"image_size": 16}, dict(SMOKE_SPACE)
    if not seeds or args.steps < 1 or args.per_bucket < 1 or args.random_archs < 0:
        parser.error("--seeds needs at least one seed; --steps and --per-bucket >= 1; --random-archs >= 0")
    out = Path(args.out)
    previous = previous_report(parser, args)
    start = time.perf_counter()
    device = setup_device(args.device, args.threads)

    from raynas.arch import arch_id
    from raynas.data import load_dataset
    from raynas.registry import create_space
    from raynas.selectors import PreNASSelector, ResourceBuckets
    from raynas.selectors.buckets import parse_amount

    space = create_space(args.space, **options)
    low, high = space.cost(space.smallest())["params"], space.cost(space.largest())["params"]
    buckets = ResourceBuckets.covering(low, high, parse_amount(args.bucket_step))
    if previous:
        candidates, selection_info = previous["candidates"], previous["selection"]
    else:
        t = time.perf_counter()
        selection = PreNASSelector(space, batch_size=args.selector_batch, seed=0, device=str(device)) \
            .select(buckets, args.per_bucket)
        candidates = [c.arch for c in selection.candidates]
        selection.write(out.with_name(out.stem + "_candidates.json"))
        print(selection.table(), flush=True)
        selection_info = {"seconds": time.perf_counter() - t, "isomer_groups": len(selection.representatives),
                          "buckets": buckets.to_dict(), "bucket_summary": selection.bucket_summary(),
                          "candidates": [{"bucket": buckets.label(c.bucket), "params": c.params, "score": c.score,
                                          "arch_id": c.arch_id} for c in selection.candidates]}
    references = pick_random_archs(space, args.random_archs, [arch_id(a) for a in candidates], seed=0)

    dataset = load_dataset(data, seed=0, **data_options)
    spe = steps_per_epoch(dataset, args.batch_size)
    args.epochs = args.steps / spe
    base = training_config(args, options=options, data=data, data_options=data_options, device=device,
                           output=tempfile.mkdtemp(prefix="raynas-prenas-"),
                           warmup_epochs=min(args.warmup_epochs, args.epochs / 2), label_smoothing=0.1,
                           grad_clip=5.0)
    trainings: List[Dict[str, Any]] = list(previous.get("trainings", []))

    def report(complete: bool) -> Dict[str, Any]:
        return {"benchmark": "prenas_preferred", "smoke": args.smoke, "complete": complete, **environment(device),
                "command": "python benchmarks/prenas_preferred.py " + " ".join(sys.argv[1:] if argv is None else argv),
                "space": {"name": args.space, "options": options, "params_range": [low, high]},
                "data": data if args.smoke else args.data, "image_size": dataset.image_size,
                "settings": {"steps": args.steps, "epochs": args.epochs, "steps_per_epoch": spe,
                             "batch_size": args.batch_size, "lr": args.lr, "weight_decay": args.weight_decay,
                             "warmup_epochs": base["warmup_epochs"], "seeds": seeds, "per_bucket": args.per_bucket,
                             "bucket_step": args.bucket_step, "selector_batch": args.selector_batch},
                "published": {"PreNAS Fig. 4 (ImageNet, Tiny)": "preferred training about +0.5% top-1 per "
                              "pre-selected subnet over redundant (uniform) training"},
                "selection": selection_info, "candidates": candidates, "random_archs": references,
                "summary": summarise(trainings), "trainings": trainings, "wall_s": time.perf_counter() - start}

    done = {(t["training"], t["seed"]) for t in trainings}
    for seed in seeds:
        for kind in TRAININGS:
            if (kind, seed) in done:
                continue
            run = train_and_score(kind, seed, base, candidates, references, dataset, args, device)
            trainings.append(run)
            cand = [a["test"] for a in run["archs"] if a["role"] == "candidate"]
            print(f"[{kind} seed {seed}] candidates' inherited test {np.mean(cand):.2f} "
                  f"({run['train_cpu_s']:.0f} CPU s)", flush=True)
            write_report(str(out), report(complete=False))
    final = report(complete=True)
    write_arch_csv(out.with_name(out.stem + "_archs.csv"), trainings)
    write_report(str(out), final)
    s = final["summary"]
    print(f"\n{'training':<10} {'candidates val':>15} {'candidates test':>16} {'random test':>12}")
    for kind in TRAININGS:
        if kind in s:
            print(f"{kind:<10} {s[kind]['candidate']['val']:15.2f} {s[kind]['candidate']['test']:16.2f} "
                  f"{s[kind]['random']['test']:12.2f}")
    if "candidate_gain" in s:
        g = s["candidate_gain"]
        print(f"preferred - uniform on the candidates: {g['mean']:+.2f} (wins {g['wins']}/{g['pairs']})")
    return final


if __name__ == "__main__":
    main()

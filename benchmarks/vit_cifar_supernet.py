"""Train the CIFAR ViT supernet briefly and report the largest / smallest (and a few random)
subnets' weight-inherited accuracy (issue 4, item 5 ii; the step-throughput half is
``supernet_throughput.py --space vit_cifar``).

The shared trainer runs it: ``sandwich`` (largest on the labels, its logits teaching one random
subnet and the smallest once the labels-only first half is over) or ``uniform`` (AutoFormer: one random subnet per step), AdamW, bf16 on
GPU, the uint8 training set and its augmentation on the GPU. Accuracy with inherited weights on
the held-out validation split and on the test set (``WeightInheritedEvaluator``); the largest
subnet is also exported to timm and re-evaluated (the two must agree).

    PYTHONPATH=. python benchmarks/vit_cifar_supernet.py --device cuda --budget-s 70
    PYTHONPATH=. python benchmarks/vit_cifar_supernet.py --smoke     # digits, CPU, seconds

Writes benchmarks/results/vit_cifar_supernet.json (atomically).
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

from benchmarks.common import (RESULTS, Deadline, add_run_arguments, environment, epochs_for,  # noqa: E402
                               inherited_evaluators, resolve_data_spec, seconds_per_step, setup_device,
                               split_for_test, steps_per_epoch, training_config, write_report)

SMOKE_VIT = dict(img_size=16, embed_dims=[32, 64], depths=[2, 3], num_heads=[1, 2],
                 mlp_ratios=[2.0, 4.0], supernet_embed_dim=64, supernet_depth=3,
                 supernet_num_heads=2, supernet_mlp_ratio=4.0, head_dim=16)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(parser, space="vit_cifar", space_options="{}", batch_size=256, lr=1e-3,
                      out=str(RESULTS / "vit_cifar_supernet.json"), smoke_help="digits on CPU (seconds)",
                      resumable=False)
    parser.add_argument("--sampler", choices=["uniform", "sandwich"], default="sandwich")
    parser.add_argument("--warmup-epochs", type=float, default=1.0)
    parser.add_argument("--random-subnets", type=int, default=4)
    parser.add_argument("--min-epochs", type=float, default=1.0)
    parser.add_argument("--budget-s", type=float, default=70.0, help="wall-time budget of the whole run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    options = json.loads(args.space_options)
    data, data_options = resolve_data_spec(args.data), {}
    if args.smoke:
        args.device, args.batch_size, args.random_subnets, args.eval_batch = "cpu", 32, 2, 128
        args.threads, args.min_epochs, args.warmup_epochs = args.threads or 1, 0.05, 0.0
        args.budget_s = min(args.budget_s, 10.0)
        data, data_options = "digits", {"image_size": 16}
        options = {**SMOKE_VIT, **options}
    deadline = Deadline(args.budget_s)
    device = setup_device(args.device, args.threads)

    from raynas.arch import arch_id
    from raynas.data import load_dataset
    from raynas.rng import derive_rng
    from raynas.training import SupernetTrainConfig
    from trainables.supernet import SupernetTrainer, evaluate_accuracy

    stages: Dict[str, float] = {}
    t = time.perf_counter()
    dataset = load_dataset(data, seed=args.seed, **data_options)
    stages["data_s"] = time.perf_counter() - t
    work = tempfile.mkdtemp(prefix="raynas-vit-")
    config = training_config(args, options=options, data=data, data_options=data_options, device=device,
                             output=work, warmup_epochs=args.warmup_epochs, label_smoothing=0.1,
                             grad_clip=5.0, sampler=args.sampler,
                             sampler_options={"num_random": 1} if args.sampler == "sandwich" else {},
                             seed=args.seed)
    t = time.perf_counter()
    spe = steps_per_epoch(dataset, args.batch_size)
    step_s = seconds_per_step(dict(config, epochs=1), dataset, steps=2 if args.smoke else 8,
                              warmup=1 if args.smoke else 3)
    stages["probe_s"] = time.perf_counter() - t
    # the evaluation of a few subnets and the export check take about a tenth of the budget
    epochs = epochs_for(0.85 * deadline.remaining(), step_s, spe, args.min_epochs)
    if args.smoke:
        epochs = 0.1
    print(f"{step_s * 1000:.1f} ms/step -> {epochs:.2f} epochs", flush=True)
    t = time.perf_counter()
    trainer = SupernetTrainer(SupernetTrainConfig.from_any(dict(config, epochs=epochs)), dataset)
    trainer.fit()
    stages["train_s"] = time.perf_counter() - t

    t = time.perf_counter()
    space, net = trainer.space, trainer.module
    rng = derive_rng(args.seed, "eval-subnets")
    named = {"largest": space.largest(), "smallest": space.smallest()}
    named.update({f"random{i}": space.sample(rng) for i in range(args.random_subnets)})
    on_val, on_test = inherited_evaluators(net, dataset, device, min(args.eval_batch, len(dataset.split("calib"))),
                                           args.eval_batch)
    subnets = {}
    for name, arch in named.items():
        val, test = on_val.evaluate([arch])[0], on_test.evaluate([arch])[0]
        subnets[name] = {"arch": arch, "arch_id": arch_id(arch), "params": val["params"],
                         "flops": val["flops"], "val": val["accuracy"], "test": test["accuracy"]}
        print(f"{name}: params {val['params']:.0f} val {val['accuracy']:.2f} test {test['accuracy']:.2f}",
              flush=True)
    exported = net.export(space.largest())
    exported_test = evaluate_accuracy(exported, dataset, split_for_test(dataset), device, None, args.eval_batch,
                                      bf16=device.type == "cuda")
    stages["eval_s"] = time.perf_counter() - t

    params, accs = [s["params"] for s in subnets.values()], [s["val"] for s in subnets.values()]
    pearson = float(np.corrcoef(params, accs)[0, 1]) if np.std(accs) > 0 else float("nan")
    report = {
        "benchmark": "vit_cifar_supernet", "smoke": args.smoke, **environment(device),
        "amp": "bf16" if device.type == "cuda" else "fp32", "space": space.spec(),
        "data": args.data if not args.smoke else data,
        "settings": {"sampler": args.sampler, "batch_size": args.batch_size, "lr": args.lr,
                     "weight_decay": args.weight_decay, "optimizer": "adamw", "budget_s": args.budget_s,
                     "seed": args.seed},
        "epochs": epochs, "steps": trainer.step, "probe_ms_per_step": step_s * 1000,
        "supernet_images_per_s": trainer.step * args.batch_size / max(stages["train_s"], 1e-9),
        "subnets_per_step": len(trainer.strategy.plan(space, 0, args.seed)),
        "subnets": subnets, "largest_exported_test": exported_test,
        "params_vs_val_accuracy_pearson": pearson if np.isfinite(pearson) else None,
        "stages_s": stages, "wall_s": deadline.elapsed(),
    }
    print(f"largest {subnets['largest']['test']:.2f}% (exported {exported_test:.2f}%), "
          f"smallest {subnets['smallest']['test']:.2f}%", flush=True)
    write_report(args.out, report)
    return report


if __name__ == "__main__":
    main()

"""`costr train-scorer DATA.jsonl`: train the learned scorer from labelled records, report how
well it routes prompts it did not see (grouped cross-validation, APGR per dataset), and write
the model file that `routing.scorer_options.model` can point at."""
from __future__ import annotations

import sys
import time

from . import training

help = "train the learned complexity scorer from labelled records (JSONL) and write its model file"


def add_arguments(parser) -> None:
    parser.add_argument("data", help="JSONL: one {dataset, messages, scores: {model: 0..1}} a line")
    parser.add_argument("--out", default="scorer_model.json.gz", help="where to write the model")
    parser.add_argument("--folds", type=int, default=2,
                        help="K for the within-dataset cross-validation report (0: skip it)")
    parser.add_argument("--weak", action="append", default=[], metavar="DATASET=MODEL",
                        help="the budget model of a dataset with more than two models "
                             "(default: the mean of all its models)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--prior-weight", type=float, default=1.0,
                        help="how much of the hand-set heuristic evidence to blend in: higher "
                             "generalises better to unlike prompts, lower fits the data better")


def run(args) -> int:
    weak = dict(item.split("=", 1) for item in args.weak)
    started = time.monotonic()
    examples = training.read_examples(args.data, weak=weak)
    if not examples:
        print(f"costr: {args.data} holds no records", file=sys.stderr)
        return 2
    datasets = sorted({e.dataset for e in examples})
    print(f"{len(examples)} records in {len(datasets)} dataset(s): {', '.join(datasets)}")
    if args.folds >= 2:
        report = training.cross_validate(examples, folds=args.folds, epochs=args.epochs,
                                          prior_weight=args.prior_weight)
        print("APGR on held-out prompts (0.5 = random routing; higher is better):")
        print(f"  {'dataset':<16}{f'{args.folds}-fold':>10}{'other datasets only':>22}")
        for d in datasets:
            other = report["other datasets"].get(d)
            print(f"  {d:<16}{report['k-fold'][d]:>10.3f}"
                  f"{'' if other is None else f'{other:.3f}':>22}")
    model = training.train(examples, epochs=args.epochs, prior_weight=args.prior_weight)
    model.meta = {"records": len(examples), "datasets": datasets, "weak": weak}
    model.save(args.out)
    print(f"wrote {args.out} ({len(model.sparse)} n-gram weights) in "
          f"{time.monotonic() - started:.0f}s; use it with\n"
          f"  routing: {{scorer: learned, scorer_options: {{model: {args.out}}}}}")
    return 0

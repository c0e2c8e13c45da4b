"""`costr train-scorer DATA.jsonl...`: train the learned scorer from labelled records, report how
well it routes prompts it did not see (cross-validation within each dataset and across datasets,
APGR per dataset), and write the model file that `routing.scorer_options.model` can point at.

`--oof-scores FILE` also writes each record's score from the cross-validation model that did not
see it. A model scores its own training data too well, so calibrating the policies on that data
(`costr calibrate DATA.jsonl --scores FILE`) or evaluating them (`costr eval --scores FILE`)
needs these held-out scores instead."""
from __future__ import annotations

import hashlib
import json
import sys
import time

from . import training

help = "train the learned complexity scorer from labelled records (JSONL) and write its model file"


def add_arguments(parser) -> None:
    parser.add_argument("data", nargs="+",
                        help="JSONL file(s): one {dataset, messages, scores: {model: 0..1}} a "
                             "line (the shipped model: shared/routing-eval's dev.jsonl and "
                             "chat-dev.jsonl)")
    parser.add_argument("--out", default="scorer_model.json.gz", help="where to write the model")
    parser.add_argument("--folds", type=int, default=5,
                        help="K for the within-dataset cross-validation (default 5; 0: skip it)")
    parser.add_argument("--oof-scores", metavar="FILE",
                        help="write each record's held-out score from the cross-validation "
                             "(JSONL {id, score}) for costr calibrate/eval --scores")
    parser.add_argument("--weak", action="append", default=[], metavar="DATASET=MODEL",
                        help="the budget model of a dataset with more than two models (default: "
                             "the cheapest by costr eval's prices, else the mean of all models)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--prior-weight", type=float, default=0.5,
                        help="how much of the hand-set heuristic evidence to blend in: higher "
                             "generalises better to unlike prompts, lower fits the data better")


def run(args) -> int:
    if args.oof_scores and args.folds < 2:
        print("costr: --oof-scores needs --folds 2 or more", file=sys.stderr)
        return 2
    weak = dict(item.split("=", 1) for item in args.weak)
    started = time.monotonic()
    examples, fingerprints = [], []
    for path in args.data:
        try:
            examples += training.read_examples(path, weak=weak)
            with open(path, "rb") as handle:
                fingerprints.append(hashlib.file_digest(handle, "sha256").hexdigest())
        except OSError as exc:
            print(f"costr: {path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
            return 2
        except ValueError as exc:   # not JSON, or a record without messages and scores
            print(f"costr: {path}: {exc}", file=sys.stderr)
            return 2
    if not examples:
        print(f"costr: {' '.join(args.data)} hold(s) no records to learn from", file=sys.stderr)
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
        if args.oof_scores:
            with open(args.oof_scores, "w", encoding="utf-8") as out:
                for ident, score in report["scores"].items():
                    out.write(json.dumps({"id": ident, "score": score}) + "\n")
            print(f"wrote {args.oof_scores} ({len(report['scores'])} held-out scores)")
    model = training.train(examples, epochs=args.epochs, prior_weight=args.prior_weight)
    model.meta = {"records": len(examples), "datasets": datasets, "weak": weak,
                  "data_sha256": fingerprints}
    model.save(args.out)
    print(f"wrote {args.out} ({len(model.sparse)} n-gram weights) in "
          f"{time.monotonic() - started:.0f}s; use it with\n"
          f"  routing: {{scorer: learned, scorer_options: {{model: {args.out}}}}}")
    return 0

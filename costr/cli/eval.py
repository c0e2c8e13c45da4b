"""`costr eval DATA.jsonl`: how well the configured scorer and policies route labelled prompts
(the work is costr.evaluation.report's)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from importlib.util import find_spec

from costr.cli.options import add_labelled_data_arguments
from costr.evaluation.given_scores import ScoresError, in_sample_warning, load_given_scores
from costr.evaluation.report import (EvalError, TimedScorer, _public, build_report,
                                     format_report, load_prices, offline_live_config,
                                     route_records)


def add_eval_parser(subparsers) -> argparse.ArgumentParser:
    """Add `eval` to a `costr` subparsers object."""
    p = subparsers.add_parser("eval", help="measure routing quality on labelled prompts "
                              "(APGR, CPT, savings at 95%% quality, each policy's point)")
    p.add_argument("data", metavar="DATA.jsonl", nargs="+",
                   help="records in the shared/routing-eval format (several files: one data set)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--plot", metavar="FILE", help="draw quality kept against cost (.svg, or .png "
                   "when matplotlib is installed)")
    add_labelled_data_arguments(p)
    p.add_argument("--bootstrap", type=int, default=200, metavar="N",
                   help="bootstrap resamples for the 95%% intervals (default 200; 0 for none)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    return p


def run_eval(args: argparse.Namespace) -> int:
    """Run a parsed `costr eval` command; returns the exit status."""
    started = time.perf_counter()
    try:
        if args.bootstrap < 0:
            raise EvalError("--bootstrap must be 0 or more")
        if args.plot and not args.plot.lower().endswith((".svg", ".png")):
            raise EvalError("--plot FILE must end in .svg or .png")
        if args.plot and args.plot.lower().endswith(".png") and not find_spec("matplotlib"):
            raise EvalError("a .png plot needs matplotlib (pip install matplotlib); "
                            "or write an SVG: --plot FILE.svg")
        live, formats = offline_live_config(args.providers, args.policies)
        prices, output_tokens = load_prices(args.prices)
        given = load_given_scores(args.scores)
        timed = TimedScorer(live.scorer)
        routed, rated = route_records(args.data, dataclasses.replace(live, scorer=timed), formats,
                                      given)
        report = build_report(routed, live, prices, output_tokens, args.bootstrap, args.seed)
        report["scoring_us"] = timed.summary()
        report["skipped"] = rated.summary()   # rated answers that say nothing of the gap
        if args.plot:
            from costr.evaluation.plot import write_plot
            write_plot(args.plot, report)
    except (EvalError, ScoresError) as exc:
        print(f"costr eval: {exc}", file=sys.stderr)
        return 2
    report["data"] = " ".join(args.data)
    report["seconds"] = round(time.perf_counter() - started, 2)
    report["scores"] = args.scores
    report["warning"] = in_sample_warning(live, args.data, given)
    if report["warning"]:
        print(f"costr eval: warning: {report['warning']}", file=sys.stderr)
    if args.json:
        print(json.dumps(_public(report), indent=2))
    else:
        print(format_report(report))
    return 0

"""`costr calibrate DATA.jsonl [--write]`: set each policy's thresholds for a quality target, and
fit the confidence table (the work is costr.evaluation.policy_calibration's); --write edits the
files in place."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from costr.cli.hints import costr_command
from costr.cli.options import add_labelled_data_arguments
from costr.config.shipped import is_shipped
from costr.evaluation.calibration_files import (CannotEdit, confidence_lines,
                                                set_policy_thresholds, set_routing_confidence)
from costr.evaluation.given_scores import ScoresError, in_sample_warning, load_given_scores
from costr.evaluation.policy_calibration import (DEFAULT_PREMIUM_SHARES, DEFAULT_TARGETS,
                                                 calibrate, format_result, policy_lines)
from costr.evaluation.report import (EvalError, load_prices, offline_live_config, route_records,
                                     split_datasets, with_configured_prices)


def add_calibrate_parser(subparsers) -> argparse.ArgumentParser:
    """Add `calibrate` to a `costr` subparsers object."""
    p = subparsers.add_parser("calibrate", help="set the policies' thresholds for their quality "
                              "targets and fit the confidence table on labelled prompts")
    p.add_argument("data", metavar="DATA.jsonl", nargs="+",
                   help="records in the shared/routing-eval format (several files: one data set)")
    p.add_argument("--write", action="store_true", help="write the thresholds into the policy "
                   "files and the table into providers.yaml (otherwise print what to paste)")
    p.add_argument("--target", action="append", default=[], metavar="NAME=SHARE",
                   help="quality to keep for a policy, e.g. balanced=0.95 (defaults: "
                   + ", ".join(f"{k}={v}" for k, v in DEFAULT_TARGETS.items()) + ")")
    p.add_argument("--premium-share", action="append", default=[], metavar="NAME=SHARE",
                   help="share of the hardest prompts a policy sends to the top tier (defaults: "
                   + ", ".join(f"{k}={v}" for k, v in DEFAULT_PREMIUM_SHARES.items()) + ")")
    p.add_argument("--assurance", type=float, default=0.95, metavar="P",
                   help="probability that fresh samples of the data's size keep the target on "
                   "every dataset at once (default 0.95; 0.5 for no margin)")
    p.add_argument("--splits", type=int, default=50, metavar="N",
                   help="random half splits for the held-out check (default 50)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed for the random halves (default 0)")
    add_labelled_data_arguments(p)
    return p


def run_calibrate(args: argparse.Namespace) -> int:
    """Run a parsed `costr calibrate` command; returns the exit status."""
    started = time.perf_counter()
    try:
        if not 0.5 <= args.assurance < 1:
            raise EvalError("--assurance must be at least 0.5 and below 1")
        if args.splits < 0:
            raise EvalError("--splits must be 0 or more")
        if args.write and (is_shipped(args.providers) or is_shipped(args.policies)):
            # They live inside the installed package, which an upgrade would silently undo.
            raise EvalError(f"--write edits the configuration in place, and this is the shipped "
                            f"one; run `{costr_command()} init` to write an editable copy here")
        live, formats = offline_live_config(args.providers, args.policies)
        targets, shares = _settings(args, live)
        prices, output_tokens = load_prices(args.prices)
        given = load_given_scores(args.scores)
        warning = in_sample_warning(live, args.data, given)
        if warning:
            raise EvalError(warning.replace("these figures are", "thresholds set on it would be"))
        routed, rated = route_records(args.data, live, formats, given)
        prices = with_configured_prices(prices, routed, live)
        groups = {d.name: d.prompts for d in split_datasets(routed, prices, output_tokens)}
        result = calibrate(groups, live.config.tiers, targets, shares, args.assurance,
                           args.splits, args.seed)
    except (EvalError, ScoresError) as exc:
        print(f"costr calibrate: {exc}", file=sys.stderr)
        return 2
    scorer = live.config.routing.scorer
    print(format_result(result, " ".join(args.data), scorer, live.config.tiers))
    if rated.summary():
        print(rated.summary())
    status = _write(result, scorer, args) if args.write else _show(result, scorer)
    print(f"({round(time.perf_counter() - started, 2)} s)")
    return status


def _settings(args, live) -> tuple[dict[str, float], dict[str, float]]:
    """Targets and premium shares per policy to calibrate: defaults for the loaded policies that
    have thresholds, then the command line's."""
    policies = {name for name, (_, options) in live.config.policies.items()
                if isinstance(options.get("thresholds"), dict)}
    # A policy's own promise is its target; the shipped policies' names have defaults too.
    targets = {n: live.config.promises.get(n, DEFAULT_TARGETS.get(n)) for n in policies
               if n in live.config.promises or n in DEFAULT_TARGETS}
    shares = {n: s for n, s in DEFAULT_PREMIUM_SHARES.items() if n in policies}
    for option, items, into in (("--target", args.target, targets),
                                ("--premium-share", args.premium_share, shares)):
        for item in items:
            name, sep, value = item.partition("=")
            try:
                number = float(value)
            except ValueError:
                number = -1.0
            if not sep or not 0 <= number <= 1:
                raise EvalError(f"{option} {item}: expected NAME=SHARE with SHARE from 0 to 1")
            if name not in policies:
                raise EvalError(f"{option} {item}: no thresholds policy named {name!r} (loaded: "
                                f"{', '.join(sorted(policies))})")
            into[name] = number
    if len(live.config.tiers) < 2:
        raise EvalError("there is one tier only: nothing to calibrate")
    missing = sorted(n for n in targets if n not in shares and len(live.config.tiers) > 2)
    if missing:
        raise EvalError(f"no premium share for {', '.join(missing)}: add --premium-share "
                        f"{missing[0]}=SHARE")
    return targets, shares


def _show(result: dict, scorer: str) -> int:
    print("\nTo apply (or rerun with --write): in each routing_policies/NAME.yaml")
    for name, p in result["policies"].items():
        print(f"  {name}: {policy_lines(p)}")
    print("and under routing: in providers.yaml")
    c = result["confidence"]
    print("".join(confidence_lines(scorer, c["scores"], c["budget_suffices"])), end="")
    return 0


def _write(result: dict, scorer: str, args) -> int:
    """Edit the files in place; a file whose layout the edit does not understand is left alone
    and what to paste is printed instead (exit status 1)."""
    status = 0
    print()
    policy_files = {p.stem: p for p in sorted(Path(args.policies).glob("*.y*ml"))}
    edits = [(policy_files[name], lambda text, p=p: set_policy_thresholds(
                  text, p["thresholds"], p["form_thresholds"]),
              policy_lines(p)) for name, p in result["policies"].items()]
    c = result["confidence"]
    edits.append((Path(args.providers), lambda text: set_routing_confidence(
        text, scorer, c["scores"], c["budget_suffices"]),
        "routing:\n" + "".join(confidence_lines(scorer, c["scores"], c["budget_suffices"]))))
    for path, edit, snippet in edits:
        try:
            path.write_text(edit(path.read_text()))
            print(f"wrote {path}")
        except CannotEdit as exc:
            print(f"{path}: not written ({exc}); paste this instead:\n{snippet}")
            status = 1
        except OSError as exc:
            print(f"{path}: cannot write: {exc.strerror or exc}", file=sys.stderr)
            status = 2
    return status

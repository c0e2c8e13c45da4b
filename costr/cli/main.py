"""`costr` command line: serve, check, init, plugins, keys, eval, bench, connect."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path

from costr.config.files import load_config, stale_confidence
from costr.errors import ConfigError
from costr.cli.calibrate import add_calibrate_parser, run_calibrate
from costr.cli.eval import add_eval_parser, run_eval
from costr.cli.feedback import add_feedback_parser, run_feedback
from costr.cli.hints import first_key_hint, no_provider_hint, shipped_notice
from costr.cli.init import add_init_parser, run_init
from costr.cli.keys import add_keys_parser, run_keys
from costr.cli.options import add_config_arguments, add_observability_arguments, database_options
from costr.accounts.store import StoreUnavailable, open_store, redacted
from costr.plugins import DuplicateRegistration, KINDS, collect, make_plugin_manager, plugin_origin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="costr", description="A self-hosted LLM cost router.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway", parents=[database_options()])
    add_config_arguments(serve)
    serve.add_argument("--host", default=os.environ.get("COSTR_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("COSTR_PORT", "8787")))
    serve.add_argument("--log-level", default=os.environ.get("COSTR_LOG_LEVEL", "info"),
                       choices=["debug", "info", "warning", "error"])
    serve.add_argument("--cache", default=os.environ.get("COSTR_CACHE_URL"),
                       help="response cache: memory:// (default), sqlite:///PATH, "
                            "redis://HOST:PORT/DB, or none (env COSTR_CACHE_URL)")
    serve.add_argument("--limits", default=os.environ.get("COSTR_LIMITS_URL"),
                       help="memory:// (default) or redis://HOST:PORT/DB to share rate limits "
                            "between instances (env COSTR_LIMITS_URL)")
    serve.add_argument("--max-body-mb", type=megabytes, default=os.environ.get("COSTR_MAX_BODY_MB", "32"),
                       help="refuse request bodies larger than this with 413, without reading "
                            "them whole (default 32; env COSTR_MAX_BODY_MB)")
    serve.add_argument("--max-answer-mb", type=megabytes,
                       default=os.environ.get("COSTR_MAX_ANSWER_MB", "64"),
                       help="an upstream answer, or one event of a streamed answer, larger than "
                            "this is refused with a retryable 502 (the next model is tried) "
                            "without being held whole (default 64; env COSTR_MAX_ANSWER_MB)")
    serve.add_argument("--no-dashboard", dest="dashboard", action="store_false",
                       default=os.environ.get("COSTR_DASHBOARD", "on").lower() not in ("off", "0", "false", "no"),
                       help="do not serve the browser dashboard at /dashboard (env COSTR_DASHBOARD=off)")
    serve.add_argument("--root-path", default=os.environ.get("COSTR_ROOT_PATH", ""),
                       help="the path prefix a reverse proxy serves Costr under, e.g. /costr, for "
                            "the dashboard's links and redirects; the proxy strips it before "
                            "passing requests on (env COSTR_ROOT_PATH)")
    add_observability_arguments(serve)
    serve.add_argument("--drain-seconds", type=float,
                       default=float(os.environ.get("COSTR_DRAIN_SECONDS", "0")),
                       help="on SIGTERM, keep answering this long with the health check at 503 "
                            "draining and every connection closed after its answer, so a load "
                            "balancer moves away, before stopping (default 0; env "
                            "COSTR_DRAIN_SECONDS; docs/operations.md)")
    check = sub.add_parser("check", help="validate providers.yaml and the policies, then exit")
    add_config_arguments(check)
    add_init_parser(sub)
    sub.add_parser("plugins", help="list loaded plugins, what they register and where from")
    add_keys_parser(sub)
    add_feedback_parser(sub)
    add_eval_parser(sub)
    add_calibrate_parser(sub)
    sub.add_parser("bench", help="measure the gateway against a local fake upstream "
                   "(options: costr bench --help)", add_help=False)
    sub.add_parser("connect", help="print or --write the settings that point a coding agent at "
                   "this host (options: costr connect --help)", add_help=False)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # its options are the benchmark's own
        from costr.benchmark import run as benchmark
        return benchmark.main(argv[1:])
    if argv[:1] == ["connect"]:  # needs no plugins or configuration
        from costr.cli import connect
        return connect.main(argv[1:])
    try:
        registry, pm = _load_plugins()
        plugin_commands = _add_plugin_commands(sub, registry)
    except DuplicateRegistration as exc:
        print(f"costr: plugin conflict: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if args.command in plugin_commands:  # a plugin's own command: no configuration needed
        return plugin_commands[args.command].run(args)
    # Commands that read no gateway configuration (or read it their own way).
    standalone = {"init": run_init, "keys": run_keys, "feedback": run_feedback,
                  "eval": run_eval, "calibrate": run_calibrate}
    if args.command in standalone:
        return standalone[args.command](args)
    if args.command == "plugins":
        return _plugins(pm)
    if args.command == "serve":
        from costr.server.access_log import configure_logging
        args.logs_through_root = configure_logging(args.log_level, args.log_format)
    notice = shipped_notice(args.providers, args.policies)
    if notice:
        _say(args, notice)
    try:
        config = load_config(args.providers, args.policies, registry)
    except ConfigError as exc:
        _say(args, "\n  ".join([f"costr: the configuration has {len(exc.problems)} problem(s):",
                                *exc.problems]))
        return 2
    if args.command == "check":
        return _check(config)
    return _serve(args, registry, config)


def megabytes(text: str) -> float:
    """A size limit in MB, from the command line or its environment variable: a positive number
    (a limit of 0 would refuse everything)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of megabytes") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: the limit must be a positive number of megabytes")
    return value


def _load_plugins():
    pm = make_plugin_manager()
    return collect(pm), pm


def _add_plugin_commands(sub, registry) -> dict:
    """Subcommands registered by plugins; a name the host already uses is a conflict."""
    for name, command in registry.commands.items():
        if name in sub.choices:
            plugin = registry.origins[("command", name)]
            raise DuplicateRegistration(f"plugin {plugin!r} registers the command {name!r}, "
                                        "which costr already has")
        command.add_arguments(sub.add_parser(name, help=command.help))
    return dict(registry.commands)


def _plugins(pm) -> int:
    registry = collect(pm)
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # blocked: left out by COSTR_LOAD_PLUGINS
            continue
        print(f"{name}  ({plugin_origin(pm, plugin)})")
        for kind in KINDS.values():
            names = [n for (k, n), who in registry.origins.items() if k == kind and who == name]
            if names:
                print(f"    {kind}: {', '.join(sorted(names))}")
    return 0


def _check(config) -> int:
    missing = config.missing_credentials()
    chat = [m for m in config.models.values() if m.mode == "chat"]
    print(f"OK: {len(chat)} chat models in tiers {', '.join(config.tiers)}; "
          f"{len(config.models) - len(chat)} embedding models; policies: "
          f"{', '.join(sorted(config.policies))}; baseline {config.baseline.id}.")
    for name, env in missing.items():
        print(f"note: provider {name} is left out of routing until {env} is set.")
    stale = stale_confidence(config.routing)
    if stale:
        print(f"note: {stale}.")
    return 0


def _raise_open_files_limit() -> None:
    """Raise the soft limit on open files to the hard limit: each open stream holds two
    descriptors (its client's connection and its upstream's), so the usual soft limit of
    1,024 runs out near 500 streams (docs/benchmark.md, "1,000 slow streams")."""
    try:
        import resource
    except ImportError:   # Windows: no such limit
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = hard
    if hard == resource.RLIM_INFINITY:   # the kernel's own ceiling applies
        with contextlib.suppress(OSError, ValueError):
            ceiling = int(Path("/proc/sys/fs/nr_open").read_text())
    if soft != resource.RLIM_INFINITY and ceiling != resource.RLIM_INFINITY and soft < ceiling:
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))


def _serve(args, registry, config) -> int:
    _raise_open_files_limit()
    import uvicorn

    from costr.server.app import create_app
    from costr.server.draining import Draining, DrainingServer, drain_gate
    try:
        keys = asyncio.run(_count_keys(args.database, args.data_dir))
    except StoreUnavailable as exc:
        _say(args, f"costr: {exc}")
        return 2
    stale = stale_confidence(config.routing)
    if stale:
        _say(args, f"costr: warning: {stale}.")
    where = f" --database {redacted(args.database)}" if args.database else (
        f" --data-dir {args.data_dir}" if args.data_dir else "")
    missing = config.missing_credentials()
    if len(missing) == len(config.providers):
        _say(args, no_provider_hint(missing, where))
    if not keys:
        _say(args, first_key_hint(where))
    app = create_app(providers_path=Path(args.providers), policies_dir=Path(args.policies),
                     registry=registry, database=args.database, data_dir=args.data_dir,
                     limits=args.limits, cache=args.cache, dashboard=args.dashboard,
                     max_body_bytes=int(args.max_body_mb * 1024 * 1024),
                     max_answer_bytes=int(args.max_answer_mb * 1024 * 1024),
                     metrics_port=args.metrics_port, metrics_host=args.metrics_host,
                     access_log=args.log_format == "json")
    # json: uvicorn's own lines go through the root logger's JSON formatter too
    logging_config = {"log_config": None} if args.logs_through_root else {}
    # Behind a load balancer a stopping instance drains first (costr/server/draining.py).
    draining = Draining()
    server = DrainingServer(uvicorn.Config(
        drain_gate(app, draining), host=args.host, port=args.port,
        root_path=args.root_path.rstrip("/"), log_level=args.log_level, access_log=False,
        **logging_config, loop="auto", http="auto", lifespan="on", timeout_graceful_shutdown=30),
        draining, drain_seconds=max(0.0, args.drain_seconds))
    try:
        server.run()
    except KeyboardInterrupt:  # a second Ctrl-C
        pass
    return 0 if server.started else 3  # uvicorn's status for a server that never started


def _say(args, text: str) -> None:
    """A notice for the operator on stderr; with `serve --log-format json`, a JSON log line
    like every other."""
    if getattr(args, "log_format", "text") == "json":
        logging.getLogger("costr").warning(text)
    else:
        print(text, file=sys.stderr)


async def _count_keys(database: str | None, data_dir: str | None) -> int:
    store = await open_store(database, data_dir)
    try:
        return await store.count_keys()
    finally:
        await store.close()


if __name__ == "__main__":
    sys.exit(main())

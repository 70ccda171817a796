"""The ``sparkneural`` command.

``sparkneural list``, ``sparkneural run <pipeline> --conf conf/<pipeline>.yaml [--remote sc://host:port] [key=value ...]``
and ``sparkneural build-horovod [--dry-run] [--rebuild]`` (see :mod:`sparkneural.horovod_build`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from sparkneural import horovod_build, runner
from sparkneural.config import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sparkneural", description="Deep learning pipelines on Spark.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the pipelines and what each does")
    run = commands.add_parser("run", help="run a pipeline")
    run.add_argument("pipeline")
    run.add_argument("--conf", help="YAML config, e.g. conf/<pipeline>.yaml")
    runner.add_remote_argument(run)
    run.add_argument("overrides", nargs="*", help="key=value settings (dotted keys for nesting)")
    build = commands.add_parser("build-horovod", help=f"build horovod {horovod_build.HOROVOD_VERSION} for this torch "
                                "(C++17 wrapper, wheel cached) and install it into this environment")
    horovod_build.add_arguments(build)
    # key=value items may come after --conf; argparse leaves those to parse_known_args' rest.
    args, rest = parser.parse_known_args(argv)
    unknown = [item for item in rest if "=" not in item or item.startswith("-")]
    if unknown or (rest and args.command != "run"):
        parser.error(f"unrecognized arguments: {' '.join(unknown or rest)}")
    overrides = [*getattr(args, "overrides", []), *rest]
    if args.command == "build-horovod":
        return horovod_build.build_and_install(rebuild=args.rebuild, dry_run=args.dry_run)
    if args.command == "list":
        pipelines = runner.available()
        width = max(map(len, pipelines), default=0)
        for name, purpose in pipelines.items():
            print(f"{name:<{width}}  {purpose}")
        return 0
    try:
        runner.run(runner.load_pipeline(args.pipeline), args.conf, overrides, args.remote)
    except (ConfigError, ValueError) as err:
        print(f"sparkneural: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `gridplace` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gridplace_operator import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridplace",
        description="Place GPU inference replicas across regions by latency, carbon and price.",
    )
    parser.add_argument("--version", action="version", version=f"gridplace {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_crds_command(commands)
    return parser


def _add_crds_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    crds = commands.add_parser(
        "crds", help="write the CRDs (and the API reference) generated from the API models"
    )
    crds.add_argument("--output-dir", type=Path, default=Path("crds"), help="default: crds")
    crds.add_argument(
        "--reference", type=Path, help="also write the API reference, e.g. docs/api.md"
    )
    crds.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the files are out of date"
    )
    crds.set_defaults(func=_crds)


def _crds(args: argparse.Namespace) -> int:
    from gridplace_operator import crdgen  # noqa: PLC0415 - keeps `gridplace --help` fast

    if args.check:
        stale = crdgen.drift(args.output_dir, args.reference)
        for path in stale:
            print(f"out of date: {path} (run `gridplace crds` to regenerate)", file=sys.stderr)
        return 1 if stale else 0
    for path in crdgen.write(args.output_dir, args.reference):
        print(f"wrote {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

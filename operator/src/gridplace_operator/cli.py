"""The `gridplace` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gridplace_operator import __version__, placement_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridplace",
        description="Place GPU inference replicas across regions by latency, carbon and price.",
    )
    parser.add_argument("--version", action="version", version=f"gridplace {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_crds_command(commands)
    _add_run_command(commands)
    placement_commands.add_commands(commands)
    return parser


def _add_run_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser("run", help="run the operator against a cluster")
    run.add_argument("--kubeconfig", help="default: in-cluster credentials, else $KUBECONFIG")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        action="append",
        dest="namespaces",
        help="watch InferenceDeployments in this namespace only (repeatable)",
    )
    scope.add_argument(
        "--all-namespaces", action="store_true", help="watch every namespace (the default)"
    )
    # Loopback by default: the endpoints have no authentication, and a `gridplace run` on a
    # laptop or a node should not publish them. The chart binds 0.0.0.0 inside its pod.
    run.add_argument(
        "--metrics-address",
        default="127.0.0.1",
        help="address /metrics binds to, e.g. 0.0.0.0 for every interface; default: 127.0.0.1",
    )
    run.add_argument("--metrics-port", type=int, default=8081, help="0 disables; default: 8081")
    run.add_argument(
        "--liveness",
        default="http://127.0.0.1:8080/healthz",
        help="kopf liveness endpoint URL; its host is the address it binds to"
        ' ("" disables); default: http://127.0.0.1:8080/healthz',
    )
    run.add_argument("--plan-period", type=float, default=60.0, help="seconds; default: 60")
    run.add_argument("--debounce", type=float, default=1.0, help="seconds; default: 1")
    run.add_argument("--solve-time-limit", type=float, default=10.0, help="seconds; default: 10")
    run.add_argument(
        "--prometheus-url",
        help="Prometheus base URL; turns the p95 autoscaler on (default: off, sized from demand)",
    )
    run.add_argument(
        "--prometheus-rate-window",
        type=_rate_window,
        default="2m",
        help="PromQL range of the latency and rate queries; default: 2m",
    )
    run.add_argument(
        "--autoscale-period",
        type=float,
        default=15.0,
        help="seconds between autoscaler decisions; default: 15",
    )
    run.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="hold a Lease so that only one of several replicas writes; default: on",
    )
    run.add_argument(
        "--leader-election-namespace",
        default=None,
        help="namespace of the Lease; default: $POD_NAMESPACE, else default",
    )
    run.add_argument(
        "--lease-name", default="gridplace-operator", help="default: gridplace-operator"
    )
    run.add_argument(
        "--feed-allowed-hosts",
        help="comma-separated hosts signal feeds may reach (default: any; sets"
        " GRIDPLACE_FEED_ALLOWED_HOSTS)",
    )
    run.add_argument("--verbose", action="store_true", help="debug logging")
    run.set_defaults(func=_run)


def _rate_window(text: str) -> str:
    from gridplace_operator.prom import check_window  # noqa: PLC0415 - keeps `--help` fast

    try:
        return check_window(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _run(args: argparse.Namespace) -> int:
    import logging  # noqa: PLC0415 - the operator's imports are heavy; keep other commands fast
    import os  # noqa: PLC0415

    if args.kubeconfig:
        # Before kopf and the kubernetes client are imported: the client reads it at import.
        os.environ["KUBECONFIG"] = args.kubeconfig
    if args.feed_allowed_hosts is not None:  # ProviderSettings.from_env reads it at start
        os.environ["GRIDPLACE_FEED_ALLOWED_HOSTS"] = args.feed_allowed_hosts

    import kopf  # noqa: PLC0415

    from gridplace_operator import handlers  # noqa: PLC0415

    config = handlers.OperatorConfig(
        kubeconfig=args.kubeconfig,
        namespaces=tuple(args.namespaces or ()),
        metrics_port=args.metrics_port,
        metrics_address=args.metrics_address,
        plan_period_seconds=args.plan_period,
        debounce_seconds=args.debounce,
        max_delay_seconds=max(5.0, args.debounce * 5),
        solve_time_limit_seconds=args.solve_time_limit,
        prometheus_url=args.prometheus_url,
        prometheus_rate_window=args.prometheus_rate_window,
        autoscale_period_seconds=args.autoscale_period,
        lease_namespace=(
            (args.leader_election_namespace or os.environ.get("POD_NAMESPACE") or "default")
            if args.leader_election
            else None
        ),
        lease_name=args.lease_name,
    )
    kopf.configure(verbose=args.verbose)
    if not args.verbose:  # one line per watch event drowns what gridplace itself says
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    kopf.run(
        standalone=True,
        clusterwide=not args.namespaces,
        namespaces=args.namespaces or (),
        liveness_endpoint=args.liveness or None,
        memo=kopf.Memo(config=config),
    )
    return 0


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

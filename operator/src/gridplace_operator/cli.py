"""The `gridplace` command line.

Exit codes, one convention for every subcommand: 0 done; 2 the command line or a file it names is
wrong (argparse's own errors, a missing or unreadable file, input that fails validation), fixed by
changing the invocation or the input; 1 the command ran and failed (an API server that cannot be
reached, `crds --check` finding stale files). Errors are one line (or one line per invalid field)
on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gridplace_operator import __version__, placement_commands

if TYPE_CHECKING:
    from kubernetes import client

RUNTIME_ERROR = 1
USAGE_ERROR = placement_commands.USAGE_ERROR
API_SERVER_WAIT_SECONDS = 30.0  # how long `run` tries to reach the API server before giving up


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
    run.add_argument(
        "--resync-period",
        type=float,
        default=300.0,
        help="seconds between full listings that catch deletions a watch missed; default: 300",
    )
    run.add_argument(
        "--solve-time-limit",
        type=float,
        default=120.0,
        help="seconds; a safety net: the solve is bounded by work, so the same inputs give the"
        " same plan on any CPU; when it fires, running replicas stay; default: 120",
    )
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
    from gridplace_operator.autoscale.prometheus import check_window  # noqa: PLC0415 - fast --help

    try:
        return check_window(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _run(args: argparse.Namespace) -> int:
    import logging  # noqa: PLC0415 - the operator's imports are heavy; keep other commands fast

    if args.kubeconfig:
        problem = kubeconfig_problem(Path(args.kubeconfig))
        if problem is not None:
            print(f"gridplace run: error: --kubeconfig {problem}", file=sys.stderr)
            return USAGE_ERROR
        # Before kopf and the kubernetes client are imported: the client reads it at import.
        os.environ["KUBECONFIG"] = args.kubeconfig
    if args.feed_allowed_hosts is not None:  # ProviderSettings.from_env reads it at start
        os.environ["GRIDPLACE_FEED_ALLOWED_HOSTS"] = args.feed_allowed_hosts
    code, message = preflight(args.kubeconfig, API_SERVER_WAIT_SECONDS)
    if message is not None:
        print(f"gridplace run: error: {message}", file=sys.stderr)
        return code

    import kopf  # noqa: PLC0415

    from gridplace_operator import handlers  # noqa: F401, PLC0415 - registers the kopf handlers
    from gridplace_operator.main import OperatorConfig  # noqa: PLC0415

    config = OperatorConfig(
        kubeconfig=args.kubeconfig,
        namespaces=tuple(args.namespaces or ()),
        metrics_port=args.metrics_port,
        metrics_address=args.metrics_address,
        plan_period_seconds=args.plan_period,
        debounce_seconds=args.debounce,
        resync_period_seconds=args.resync_period,
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


def kubeconfig_problem(path: Path) -> str | None:
    """What is wrong with a kubeconfig path, or None. Checked before kopf starts: given a path
    it cannot read, kopf's start-up would fail and be retried every minute, forever."""
    if path.is_dir():
        return f"{path} is a directory, not a kubeconfig file"
    if not path.exists():
        return f"{path}: no such file"
    if not os.access(path, os.R_OK):
        return f"{path}: permission denied"
    return None


def preflight(kubeconfig: str | None, wait_seconds: float) -> tuple[int, str | None]:
    """Load the credentials and reach the API server once before kopf starts: kopf retries a
    failing start-up every 60 s without end, so a wrong kubeconfig or an unreachable server would
    never stop the process, only log tracebacks. Returns the exit code and a one-line message,
    or (0, None) when the operator can start."""
    from gridplace_operator.kube.client import load_client_config  # noqa: PLC0415 - `run` only

    try:
        api_client = load_client_config(kubeconfig)
    except Exception as err:  # YAML, a file, an exec plugin...: whatever it is, in one line
        why = " ".join((str(err) or type(err).__name__).split())[:300]
        where = (
            f"the kubeconfig {kubeconfig}"
            if kubeconfig
            else "in-cluster, else the kubeconfig "
            + (os.environ.get("KUBECONFIG") or "~/.kube/config")
        )
        return USAGE_ERROR, f"cannot load Kubernetes credentials ({where}): {why}"
    failure = reach_api_server(api_client, wait_seconds)
    return (RUNTIME_ERROR, failure) if failure is not None else (0, None)


def reach_api_server(api_client: client.ApiClient, wait_seconds: float) -> str | None:
    """None once `GET /version` answers; else, after trying for `wait_seconds` (a server that is
    still starting gets that long), why the API server could not be reached, naming its URL."""
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    from gridplace_operator.kube.rest import Rest  # noqa: PLC0415

    host = api_client.configuration.host
    rest = Rest(api_client)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            rest.get_json("/version", timeout=min(5.0, max(wait_seconds, 0.5)))
        except ApiException as err:
            if err.status == 401:
                return f"the Kubernetes API server at {host} rejected the credentials (HTTP 401)"
            if err.status is not None and err.status < 500:
                return None  # it answers; what the credentials may do is for RBAC to say
            why = f"HTTP {err.status}"
        except Exception as err:  # any transport failure: say which, and retry
            why = _transport_failure(err)
        else:
            return None
        if time.monotonic() >= deadline:
            return (
                f"cannot reach the Kubernetes API server at {host} ({why}; tried for"
                f" {wait_seconds:.0f} s)"
            )
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))


def _transport_failure(err: Exception) -> str:
    """The innermost reason of a connection failure in a few words (urllib3 wraps it in a
    `MaxRetryError` whose text repeats the whole pool and URL)."""
    reason = getattr(err, "reason", None)
    inner = reason if isinstance(reason, Exception) else err
    text = str(inner).split(": ", 1)[-1]  # drops urllib3's "<...Connection object at 0x...>"
    return f"{type(inner).__name__}: {text}"[:200]


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
    from gridplace_operator.api import crdgen  # noqa: PLC0415 - keeps `gridplace --help` fast

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
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would blame the top-level command, with its usage
        command = _subcommand(parser, args.command)
        command.error(unrecognized(unknown, command))
    if args.command is None:
        parser.print_help()
        return USAGE_ERROR
    return int(args.func(args))


def _subcommand(parser: argparse.ArgumentParser, name: str | None) -> argparse.ArgumentParser:
    """The parser of subcommand `name`, whose usage an error about its arguments should show."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            chosen: argparse.ArgumentParser = action.choices[name]
            return chosen
    return parser


def unrecognized(unknown: Sequence[str], parser: argparse.ArgumentParser) -> str:
    """argparse's message for arguments it does not know, with the closest option of the
    command for each misspelt one (`--time-limt`: did you mean `--time-limit`?)."""
    options = [o for a in parser._actions for o in a.option_strings]
    parts = []
    for arg in unknown:
        close = (
            difflib.get_close_matches(arg.split("=", 1)[0], options, n=1) if arg[:1] == "-" else []
        )
        parts.append(f"{arg} (did you mean {close[0]}?)" if close else arg)
    return "unrecognized arguments: " + " ".join(parts)


if __name__ == "__main__":
    sys.exit(main())

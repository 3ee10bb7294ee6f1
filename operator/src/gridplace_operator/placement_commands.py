"""`gridplace plan` and `gridplace simulate`: the placement engine from the command line.

Both commands exit 2 with a one-line reason (no traceback) on bad input: a missing file or a
directory, YAML that does not parse, Kubernetes manifests where a placement problem belongs, data
that fails validation (each error names the field and the value), a GPU product no profile knows
(likely misspelled: its GPUs would match no model), a data cell that cannot be read (named by file,
row and column), more `--hours` than the scenario has.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gridplace_placement import policies

if TYPE_CHECKING:
    from pydantic import ValidationError

    from gridplace_placement.plan import Plan, ZoneOutcome
    from gridplace_placement.problem import Problem

USAGE_ERROR = 2
POLICIES = policies.POLICIES  # the engine's own names: the choices of --policy and --policies


class InputError(Exception):
    """Bad input, reported as one message with exit code 2."""


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plan = commands.add_parser("plan", help="solve a placement problem file and print the plan")
    plan.add_argument(
        "file",
        type=Path,
        help="placement problem YAML: models, regions, rttMs (format: docs/placement.md;"
        " example: examples/plan-small.yaml); not Kubernetes manifests",
    )
    plan.add_argument("--output", choices=("table", "json"), default="table")
    plan.add_argument("--policy", choices=POLICIES, default="gridplace")
    plan.add_argument(
        "--time-limit", type=_positive, default=10.0, metavar="SECONDS", help="default: 10"
    )
    plan.set_defaults(func=_guarded(_plan))

    sim = commands.add_parser(
        "simulate", help="replay a scenario hour by hour and compare placement policies"
    )
    sim.add_argument("scenario", type=Path, help="scenario YAML (format: docs/cli.md)")
    sim.add_argument(
        "--data-dir",
        type=Path,
        help="directory of the scenario's data files; default: $GRIDPLACE_SCENARIO_DATA_DIR, "
        "else the scenario's dataDir",
    )
    sim.add_argument(
        "--hours",
        type=_positive_int,
        metavar="N",
        help="replay only the first N hours (at most the scenario's period.hours)",
    )
    sim.add_argument(
        "--policies",
        nargs="+",
        choices=POLICIES,
        default=["gridplace", "latency-nearest", "even-spread", "cheapest-power", "lowest-carbon"],
    )
    sim.add_argument(
        "--output-dir",
        type=Path,
        default=Path("simulation"),
        help="where simulation.json and simulation.png go; default: ./simulation",
    )
    sim.add_argument(
        "--time-limit",
        type=_positive,
        default=2.0,
        metavar="SECONDS",
        help="per hourly solve; default: 2",
    )
    sim.add_argument("--no-bound", action="store_true", help="skip the offline carbon bound")
    sim.add_argument("--json", action="store_true", help="print the totals as JSON")
    sim.add_argument("--quiet", action="store_true", help="no progress on stderr")
    sim.set_defaults(func=_guarded(_simulate))


def _positive(text: str) -> float:
    """A number of seconds above 0. The message is argparse's whole explanation, after the
    flag's name: without it argparse would name this function (`invalid _positive value`)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    """A whole number of at least 1, with a message that says so (see `_positive`)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def readable_file(path: Path, what: str) -> None:
    """Refuse a path that is not a readable file, saying which it is: "not found" for a
    directory sends the user looking for a file that is right there."""
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a {what} file")
    if not path.exists():
        raise InputError(f"{what} file not found: {path}")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied (cannot read the {what} file)")


def kubernetes_objects(documents: list[Any]) -> list[str]:
    """`Kind name` of every Kubernetes object among a file's YAML documents: the manifests a
    newcomer tries first (examples/regions.yaml) are applied to a cluster, not planned."""
    found = []
    for doc in documents:
        if isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc:
            name = (
                (doc.get("metadata") or {}).get("name")
                if isinstance(doc.get("metadata"), dict)
                else None
            )
            found.append(f"{doc['kind']} {name}" if name else str(doc["kind"]))
    return found


def load_problem_documents(path: Path) -> dict[str, Any]:
    """The one YAML mapping of a placement problem file, or an InputError that says what the
    file is instead (Kubernetes manifests, several documents, not a mapping)."""
    import yaml  # noqa: PLC0415 - keep `gridplace --help` fast

    try:
        with path.open(encoding="utf-8") as handle:
            documents = [d for d in yaml.safe_load_all(handle) if d is not None]
    except yaml.YAMLError as err:
        raise InputError(f"{path} is not valid YAML: {err}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text") from None
    objects = kubernetes_objects(documents)
    if objects:
        shown = ", ".join(objects[:3]) + (
            f" and {len(objects) - 3} more" if len(objects) > 3 else ""
        )
        raise InputError(
            f"{path} holds Kubernetes objects ({shown}), which are applied to a cluster"
            f" (kubectl apply -f {path}), where the operator plans them; `gridplace plan` takes"
            " a placement problem file instead: models, regions and rttMs in one YAML mapping"
            " (format: docs/placement.md, example: examples/plan-small.yaml)"
        )
    if len(documents) != 1 or not isinstance(documents[0], dict):
        found = f"{len(documents)} YAML documents" if len(documents) != 1 else "not a mapping"
        raise InputError(
            f"{path}: a placement problem is one YAML mapping of models, regions and rttMs"
            f" ({found}; format: docs/placement.md, example: examples/plan-small.yaml)"
        )
    problem: dict[str, Any] = documents[0]
    return problem


@contextlib.contextmanager
def native_output_to_stderr() -> Iterator[None]:
    """Send what native solver code prints on file descriptor 1 to stderr meanwhile, so stdout
    carries only this program's output (HiGHS can print diagnostics from C++)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _guarded(command: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(command(args))
        except InputError as err:
            print(f"gridplace {args.command}: error: {err}", file=sys.stderr)
            return USAGE_ERROR
        except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1

    return run


def _plan(args: argparse.Namespace) -> int:
    from pydantic import ValidationError  # noqa: PLC0415 - keep `gridplace --help` fast

    from gridplace_placement.problem import Problem  # noqa: PLC0415
    from gridplace_placement.solver import SolveOptions, solve  # noqa: PLC0415

    path: Path = args.file
    readable_file(path, "placement problem")
    raw = load_problem_documents(path)
    try:
        problem = Problem.model_validate(raw)
    except ValidationError as err:
        raise InputError(f"{path}: invalid problem\n{describe(err)}") from None
    unknown = unknown_gpu_products(problem)
    if unknown:
        raise InputError(f"{path}: invalid problem\n" + "\n".join(f"  {u}" for u in unknown))
    for note in negative_price_notes(problem):
        print(f"gridplace plan: note: {note}", file=sys.stderr)
    with native_output_to_stderr():
        plan = solve(problem, SolveOptions(time_limit_seconds=args.time_limit), args.policy)
    if args.output == "json":
        print(plan.model_dump_json(by_alias=True, indent=2))
    else:
        print(plan_table(plan))
    return 0


def unknown_gpu_products(problem: Problem) -> list[str]:
    """GPU products the file names for capacity, prices or running replicas that neither a shipped
    profile nor any model of the file knows: matched by exact name, a misspelled one would
    silently drop its GPUs (or its replicas) from the plan."""
    from gridplace_placement.scenario.names import (  # noqa: PLC0415
        shipped_gpu_products,
        unknown_name,
    )

    known = set(shipped_gpu_products())
    for model in problem.models:
        known.update(model.gpu_types, model.profiles)
    named = [
        (f"regions.{i}.{field}", gpu)
        for i, region in enumerate(problem.regions)
        for field, gpus in (("gpus", region.gpus), ("gpuHourPriceUsd", region.gpu_hour_price_usd))
        for gpu in gpus
    ]
    named += [(f"current.{i}.gpuType", a.gpu_type) for i, a in enumerate(problem.current)]
    found = (unknown_name(where, "GPU product", gpu, known) for where, gpu in named)
    return [message for message in found if message]


def negative_price_notes(problem: Problem) -> list[str]:
    """A note per region whose power price is negative: the solver counts it as free power, so
    the plan and its costs do not follow the price below 0 (see docs/cli.md)."""
    return [
        f"region {r.name} has a negative power price ({r.power_price_usd_per_mwh:g} USD/MWh);"
        " the solver and the plan's costs count it as 0 (free power, never a reason for more"
        " replicas)"
        for r in problem.regions
        if r.power_price_usd_per_mwh < 0
    ]


def describe(err: ValidationError) -> str:
    """One line per pydantic error: the field path, the message and the offending value."""
    lines = []
    for e in err.errors():
        where = ".".join(str(part) for part in e["loc"]) or "(top level)"
        value = e.get("input")
        shown = "" if isinstance(value, dict | list) else f" (got {value!r})"
        lines.append(f"  {where}: {e['msg']}{shown}")
    return "\n".join(lines)


def plan_table(plan: Plan) -> str:
    """A readable report of a plan: per model its pools, traffic split, zones and reasons."""
    out: list[str] = []
    for model in plan.models:
        out.append(
            f"{model.name}: {model.replicas} replicas in {', '.join(model.regions) or 'no region'}"
            f"  {model.carbon_g_per_hour:.1f} gCO2/h  ${model.usd_per_hour:.3f}/h"
            f"  unserved {model.unserved_rps:.3g} req/s  stopped {model.stopped_replicas}"
        )
        pools = [p for p in plan.pools if p.model == model.name]
        if pools:
            out.append(
                f"  {'region':<16}{'GPU type':<24}{'replicas':>9}{'now':>5}"
                f"{'load req/s':>12}{'capacity':>10}{'p95 wait ms':>13}"
            )
            for p in pools:
                out.append(
                    f"  {p.region:<16}{p.gpu_type:<24}{p.replicas:>9}{p.current_replicas:>5}"
                    f"{p.load_rps:>12.2f}{p.capacity_rps:>10.2f}{_millis(p.p95_wait_seconds):>13}"
                )
        out.append(
            f"  {'user zone':<16}{'demand':>8}{'unserved':>10}{'p95 TTFT s':>12}{'SLO':>5}"
            "  traffic split"
        )
        for z in (z for z in plan.zones if z.model == model.name):
            split = ", ".join(
                f"{r.region}/{_short_gpu(r.gpu_type)} {100 * r.share:.0f}%"
                for r in plan.routes
                if r.model == model.name and r.zone == z.zone
            )
            p95 = (
                "-"
                if z.predicted_p95_ttft_seconds is None
                else f"{z.predicted_p95_ttft_seconds:.3f}"
            )
            out.append(
                f"  {z.zone:<16}{z.demand_rps:>8.2f}{max(z.unserved_rps, 0.0):>10.2f}{p95:>12}"
                f"{'yes' if zone_meets_slo(z) else 'NO':>5}  {split or '-'}"
            )
        out.extend(f"  - {reason}" for reason in model.reasons)
        out.append("")
    t = plan.timing
    out.append(
        f"policy {plan.policy}  status {plan.status.value}  gap {100 * plan.gap:.2f}%"
        f"  solve {1000 * t.total_seconds:.0f} ms"
        f" (build {1000 * t.compile_seconds:.0f}, bound {1000 * t.bound_seconds:.0f},"
        f" solve {1000 * t.solve_seconds:.0f}, extract {1000 * t.extract_seconds:.0f})"
    )
    out.append(
        f"total {plan.carbon_g_per_hour:.1f} gCO2/h  ${plan.usd_per_hour:.3f}/h"
        f" (energy ${plan.energy_usd_per_hour:.3f}, GPU-hours ${plan.gpu_usd_per_hour:.3f})"
        f"  unserved {plan.unserved_rps:.3g} req/s  stopped {plan.stopped_replicas} replicas"
    )
    return "\n".join(out)


def zone_meets_slo(zone: ZoneOutcome) -> bool:
    """Whether a zone's users get their SLO: the served requests' p95 meets it *and* all of the
    demand is served. The plan's `sloMet` judges the served requests only, so a zone with most
    of its demand unserved would otherwise read `yes`."""
    from gridplace_placement.simulate import UNSERVED_RPS  # noqa: PLC0415 - the solver's noise

    return zone.slo_met and zone.unserved_rps <= UNSERVED_RPS


def _millis(seconds: float) -> str:
    return "inf" if seconds == float("inf") else f"{1000 * seconds:.1f}"


def _short_gpu(name: str) -> str:
    return name.removeprefix("NVIDIA-")


def _simulate(args: argparse.Namespace) -> int:
    from pydantic import ValidationError  # noqa: PLC0415
    from yaml import YAMLError  # noqa: PLC0415

    from gridplace_placement.scenario import load_scenario  # noqa: PLC0415
    from gridplace_placement.simulate import plot, simulate, summary_table  # noqa: PLC0415
    from gridplace_placement.solver import SolveOptions  # noqa: PLC0415

    path: Path = args.scenario
    readable_file(path, "scenario")
    try:
        data = load_scenario(path, args.data_dir)
    except FileNotFoundError as err:
        raise InputError(str(err)) from None
    except YAMLError as err:
        raise InputError(f"{path} is not valid YAML: {err}") from None
    except ValidationError as err:
        raise InputError(f"{path}: invalid scenario\n{describe(err)}") from None
    except ValueError as err:
        raise InputError(str(err)) from None

    if args.hours is not None and args.hours > len(data.hours):
        raise InputError(
            f"--hours {args.hours} is more than the {len(data.hours)} hours of {path}"
            f" (period.hours); give at most {len(data.hours)}, or leave --hours out to replay"
            " them all"
        )

    def progress(policy: str, hour: int, total: int) -> None:
        if not args.quiet and (hour % 24 == 0 or hour == total):
            print(f"{policy}: {hour}/{total} hours", file=sys.stderr)

    try:
        with native_output_to_stderr():
            sim = simulate(
                data,
                policies=args.policies,
                options=SolveOptions(time_limit_seconds=args.time_limit),
                hours=args.hours,
                bound=not args.no_bound,
                progress=progress,
            )
    except ValidationError as err:  # e.g. a model profile that does not cover a GPU type
        raise InputError(
            f"{path}: the scenario gives an invalid problem\n{describe(err)}"
        ) from None
    args.output_dir.mkdir(parents=True, exist_ok=True)
    result = sim.to_dict()
    json_path = args.output_dir / "simulation.json"
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    png_path = plot(sim, args.output_dir / "simulation.png")
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "hourly"}, indent=2))
    else:
        print(summary_table(sim))
        print(f"\nwrote {json_path} and {png_path}")
    return 0

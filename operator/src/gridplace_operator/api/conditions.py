"""Condition types and reasons of the gridplace API, with what each means.

Conditions are set on the first reconcile (as Unknown when nothing is known yet); `reason` is one
CamelCase word; `lastTransitionTime` changes only when `status` flips. `Ready` rolls the others up.
"""

from __future__ import annotations

from enum import StrEnum


class ConditionType(StrEnum):
    READY = "Ready"
    PLACED = "Placed"
    SCALED = "Scaled"
    SIGNALS_HEALTHY = "SignalsHealthy"
    ROUTED = "Routed"


class Reason(StrEnum):
    # Any condition
    PENDING = "Pending"
    INVALID_SPEC = "InvalidSpec"
    # Ready
    AVAILABLE = "Available"
    ADVISED = "Advised"
    NOT_PLACED = "NotPlaced"
    REPLICAS_NOT_READY = "ReplicasNotReady"
    CHILD_CONFLICT = "ChildConflict"
    # Placed
    PLANNED = "Planned"
    INSUFFICIENT_CAPACITY = "InsufficientCapacity"
    SLO_UNREACHABLE = "SLOUnreachable"
    AVAILABILITY_UNMET = "AvailabilityUnmet"
    NO_ELIGIBLE_REGION = "NoEligibleRegion"
    SOLVER_FAILED = "SolverFailed"
    # Scaled
    ON_TARGET = "OnTarget"
    PINNED = "Pinned"
    SCALING_UP = "ScalingUp"
    SCALING_DOWN = "ScalingDown"
    AT_MAX_REPLICAS = "AtMaxReplicas"
    SLO_BREACHED = "SLOBreached"
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    # SignalsHealthy
    FRESH = "Fresh"
    STALE = "Stale"
    USING_FALLBACK = "UsingFallback"
    MISSING_REGION = "MissingRegion"
    # Routed (only with spec.routing)
    ROUTES_APPLIED = "RoutesApplied"
    GATEWAY_NOT_FOUND = "GatewayNotFound"
    ZONE_WITHOUT_ENTRY = "ZoneWithoutEntry"
    HOSTNAME_CONFLICT = "HostnameConflict"
    # Region Ready
    GPUS_FOUND = "GPUsFound"
    NO_GPUS = "NoGPUs"
    OVERLAPPING_SELECTOR = "OverlappingSelector"
    MEMBER_NOT_FOUND = "MemberClusterNotFound"
    MEMBER_NOT_READY = "MemberClusterNotReady"


# (condition, status, reason, meaning): the documented vocabulary, rendered into docs/api.md.
INFERENCE_DEPLOYMENT_CONDITIONS: tuple[tuple[ConditionType, str, Reason, str], ...] = (
    (ConditionType.READY, "True", Reason.AVAILABLE, "Placed, and every planned replica is ready."),
    (ConditionType.READY, "True", Reason.ADVISED, "Advise mode: the plan is in status."),
    (
        ConditionType.READY,
        "False",
        Reason.INVALID_SPEC,
        "The spec breaks a rule; the message names it. Not retried until the spec changes.",
    ),
    (ConditionType.READY, "False", Reason.NOT_PLACED, "No plan could be made; see Placed."),
    *(
        (ConditionType.READY, "False", reason, f"Placed is False ({reason}); Ready says so too.")
        for reason in (
            Reason.INSUFFICIENT_CAPACITY,
            Reason.SLO_UNREACHABLE,
            Reason.AVAILABILITY_UNMET,
            Reason.NO_ELIGIBLE_REGION,
            Reason.SOLVER_FAILED,
        )
    ),
    (
        ConditionType.READY,
        "False",
        Reason.REPLICAS_NOT_READY,
        "Some planned replicas are not ready yet.",
    ),
    (
        ConditionType.READY,
        "False",
        Reason.CHILD_CONFLICT,
        "A Deployment or Service gridplace would create exists and is not gridplace's; it is"
        " left alone.",
    ),
    (ConditionType.READY, "Unknown", Reason.PENDING, "Not reconciled yet."),
    (ConditionType.PLACED, "True", Reason.PLANNED, "The plan serves all demand within the SLO."),
    (
        ConditionType.PLACED,
        "False",
        Reason.INSUFFICIENT_CAPACITY,
        "Not enough GPUs: the previous placement stays; see unmetRequestsPerSecond.",
    ),
    (
        ConditionType.PLACED,
        "False",
        Reason.SLO_UNREACHABLE,
        "Some zone has no region within the SLO (RTT plus server time).",
    ),
    (
        ConditionType.PLACED,
        "False",
        Reason.AVAILABILITY_UNMET,
        "The plan cannot meet the availability floor (minRegions, perRegionMin) or minReplicas;"
        " the message says which and why.",
    ),
    (
        ConditionType.PLACED,
        "False",
        Reason.NO_ELIGIBLE_REGION,
        "No Region is allowed, known and has an acceptable GPU type.",
    ),
    (
        ConditionType.PLACED,
        "False",
        Reason.SOLVER_FAILED,
        "The solver failed; the previous placement stays.",
    ),
    (ConditionType.PLACED, "Unknown", Reason.PENDING, "Waiting for the first plan."),
    (
        ConditionType.SCALED,
        "True",
        Reason.ON_TARGET,
        "Observed p95 is within the tolerance of the target.",
    ),
    (
        ConditionType.SCALED,
        "True",
        Reason.PINNED,
        "spec.scaling.replicas pins the total; the autoscaler is off.",
    ),
    (ConditionType.SCALED, "False", Reason.SCALING_UP, "p95 above target: adding replicas."),
    (
        ConditionType.SCALED,
        "False",
        Reason.SCALING_DOWN,
        "p95 well below target: removing replicas after the stabilization window.",
    ),
    (
        ConditionType.SCALED,
        "False",
        Reason.AT_MAX_REPLICAS,
        "p95 above target but maxReplicas reached.",
    ),
    (
        ConditionType.SCALED,
        "False",
        Reason.SLO_BREACHED,
        "Users' p95 is above the target while the count holds (replicas starting, a window not"
        " over yet); the message has the measured and target values.",
    ),
    (
        ConditionType.SCALED,
        "False",
        Reason.SLO_UNREACHABLE,
        "No replica count meets the SLO: the prefill of the mean prompt alone exceeds it, or"
        " maxReplicas replicas are too few; the message says which.",
    ),
    (
        ConditionType.SCALED,
        "Unknown",
        Reason.METRICS_UNAVAILABLE,
        "No latency metrics: without Prometheus, sized from declared demand; with Prometheus"
        " failing, the last decided total holds (within min/max) until it answers.",
    ),
    (
        ConditionType.SIGNALS_HEALTHY,
        "True",
        Reason.FRESH,
        "Every signal used is within its maxAgeSeconds.",
    ),
    (
        ConditionType.SIGNALS_HEALTHY,
        "False",
        Reason.STALE,
        "A signal is older than maxAgeSeconds and has no fallback; its last value is used.",
    ),
    (
        ConditionType.SIGNALS_HEALTHY,
        "False",
        Reason.USING_FALLBACK,
        "A signal is stale or failing; its declared fallback is used.",
    ),
    (
        ConditionType.SIGNALS_HEALTHY,
        "False",
        Reason.MISSING_REGION,
        "A region named in the spec has no Region object; it is ignored.",
    ),
    (
        ConditionType.ROUTED,
        "True",
        Reason.ROUTES_APPLIED,
        "spec.routing is set: every zone of demand has an entry whose Gateway and listener exist,"
        " and its HTTPRoute carries the plan's weights.",
    ),
    (
        ConditionType.ROUTED,
        "False",
        Reason.GATEWAY_NOT_FOUND,
        "An entry names a Gateway, or a listener of it, that does not exist; that zone gets no"
        " HTTPRoute until it does.",
    ),
    (
        ConditionType.ROUTED,
        "False",
        Reason.ZONE_WITHOUT_ENTRY,
        "A zone of demand has no entry in spec.routing: its users' requests reach no route.",
    ),
    (
        ConditionType.ROUTED,
        "False",
        Reason.HOSTNAME_CONFLICT,
        "Another InferenceDeployment claims the same host name and path on the same Gateway; the"
        " gateway serves the older route (Gateway API's precedence), the message names the other.",
    ),
)

REGION_CONDITIONS: tuple[tuple[ConditionType, str, Reason, str], ...] = (
    (
        ConditionType.READY,
        "True",
        Reason.GPUS_FOUND,
        "Nodes with GPUs match nodeSelector and the signals have values.",
    ),
    (
        ConditionType.READY,
        "False",
        Reason.NO_GPUS,
        "No node with nvidia.com/gpu matches nodeSelector.",
    ),
    (
        ConditionType.READY,
        "False",
        Reason.OVERLAPPING_SELECTOR,
        "Every GPU node nodeSelector matches counts for another Region whose selector matches it"
        " too (a node counts for the first Region by name).",
    ),
    (
        ConditionType.READY,
        "False",
        Reason.MEMBER_NOT_FOUND,
        "spec.cluster names no Karmada member cluster (or the API server gridplace runs against"
        " is not Karmada's); the region gets no replicas.",
    ),
    (
        ConditionType.READY,
        "False",
        Reason.MEMBER_NOT_READY,
        "Karmada reports the member cluster not ready, or its nodes cannot be read through"
        " Karmada's cluster proxy: the region gets no replicas until it is back.",
    ),
    (
        ConditionType.READY,
        "False",
        Reason.INVALID_SPEC,
        "The spec breaks a rule; the message names it.",
    ),
    (ConditionType.READY, "Unknown", Reason.PENDING, "Not reconciled yet."),
    (
        ConditionType.SIGNALS_HEALTHY,
        "True",
        Reason.FRESH,
        "Carbon intensity and price are within maxAgeSeconds.",
    ),
    (
        ConditionType.SIGNALS_HEALTHY,
        "False",
        Reason.STALE,
        "A signal is older than maxAgeSeconds and has no fallback; its last value is used.",
    ),
    (
        ConditionType.SIGNALS_HEALTHY,
        "False",
        Reason.USING_FALLBACK,
        "A signal is stale or failing; its declared fallback is used.",
    ),
)

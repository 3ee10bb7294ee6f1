"""Leader election on a `coordination.k8s.io/v1` Lease: one operator writes, standbys watch.

Every replica of the operator watches the cluster and keeps its mirror warm; only the holder of
the Lease plans and writes. The rules follow client-go's leader election, so they hold without
synchronised clocks:

- a candidate never trusts the `renewTime` written by another machine; it notes on its own
  monotonic clock when it last saw the Lease *change*, and takes the Lease over only once it has
  seen no change for `duration_s`;
- the leader renews every `renew_every_s` and stops writing (`may_write()` turns False) once it
  has not renewed for `renew_deadline_s`, which is shorter than `duration_s`: by the time a
  standby may take over, the old leader has already fenced itself;
- every write of the Lease is an update with the `resourceVersion` it read, so two candidates
  cannot both win: the API server answers the second with 409.

The leader also keeps the memory a successor needs (the churn budget's move history, see
`memory.Memory.lease_memory`) in an annotation of the Lease, written by the renewals it makes
anyway: a fail-over costs no extra writes and loses at most one renewal period of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from gridplace_operator.kube.rest import Rest, group_path

log = logging.getLogger(__name__)

MEMORY_ANNOTATION = "gridplace.dev/memory"


@dataclass(frozen=True)
class LeaseTiming:
    """Seconds. A standby takes over at most `duration_s + retry_every_s` after the leader's
    last renewal; the leader fences itself `renew_deadline_s` after its last renewal."""

    duration_s: float = 10.0
    renew_every_s: float = 3.0
    renew_deadline_s: float = 7.0
    retry_every_s: float = 2.0

    def __post_init__(self) -> None:
        if not self.renew_every_s < self.renew_deadline_s < self.duration_s:
            raise ValueError("lease timing needs renew_every < renew_deadline < duration")


@dataclass(frozen=True)
class LeaseRecord:
    """What the election reads of a Lease."""

    holder: str
    duration_s: float
    transitions: int
    resource_version: str
    renew_time: str
    memory: str

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> LeaseRecord:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        return cls(
            holder=spec.get("holderIdentity") or "",
            duration_s=float(spec.get("leaseDurationSeconds") or 0),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=str(meta.get("resourceVersion") or ""),
            renew_time=str(spec.get("renewTime") or ""),
            memory=(meta.get("annotations") or {}).get(MEMORY_ANNOTATION, ""),
        )


def may_take(record: LeaseRecord, me: str, unchanged_since: float, now: float) -> bool:
    """Whether `me` may write itself into the Lease: it holds it already, nobody does (a leader
    that stopped released it), or it has not changed for the duration its holder declared, as
    seen on this process's own clock."""
    if record.holder in ("", me):
        return True
    return now - unchanged_since >= record.duration_s


def lease_body(
    name: str,
    namespace: str,
    me: str,
    timing: LeaseTiming,
    *,
    previous: LeaseRecord | None,
    memory: str,
    now: datetime,
    release: bool = False,
) -> dict[str, Any]:
    """The Lease as `me` writes it: a renewal, a take-over, or (`release`) a hand-back that lets
    a standby take over at once."""
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    taking = previous is None or previous.holder != me
    transitions = 0 if previous is None else previous.transitions + (1 if taking else 0)
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "annotations": {MEMORY_ANNOTATION: memory},
    }
    if previous is not None:
        metadata["resourceVersion"] = previous.resource_version
    spec: dict[str, Any] = {
        "holderIdentity": "" if release else me,
        "leaseDurationSeconds": 1 if release else max(1, round(timing.duration_s)),
        "leaseTransitions": transitions,
        "renewTime": stamp,
    }
    if taking:
        spec["acquireTime"] = stamp
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": spec,
    }


class LeaderElector:
    """Holds or waits for the Lease. `on_acquired(memory)` runs when this process becomes the
    leader, with the memory its predecessor left; `memory()` is read at every renewal."""

    def __init__(
        self,
        rest: Rest,
        *,
        namespace: str,
        name: str,
        identity: str,
        on_acquired: Callable[[str], None],
        memory: Callable[[], str],
        timing: LeaseTiming | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rest = rest
        self.namespace, self.name, self.identity = namespace, name, identity
        self.on_acquired, self.memory = on_acquired, memory
        self.timing = timing or LeaseTiming()
        self.clock = clock
        self.leading = False
        self._renewed_at = -float("inf")
        self._seen: tuple[str, str, str] | None = None
        self._seen_at = 0.0
        self._record: LeaseRecord | None = None

    def may_write(self) -> bool:
        """True while this process leads and renewed recently enough that no standby can have
        taken over: the fence every write of the operator checks."""
        return self.leading and self.clock() - self._renewed_at < self.timing.renew_deadline_s

    def _path(self, with_name: bool = True) -> str:
        name = self.name if with_name else None
        return group_path("coordination.k8s.io", "v1", "leases", self.namespace, name)

    def _read(self) -> LeaseRecord | None:
        try:
            return LeaseRecord.from_api(self.rest.get_json(self._path(), timeout=5))
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def _write(self, body: Mapping[str, Any], create: bool) -> LeaseRecord:
        method, path = ("POST", self._path(False)) if create else ("PUT", self._path())
        response = self.rest.request(method, path, body=dict(body), timeout=5)
        return LeaseRecord.from_api(json.loads(response.data))

    def try_once(self) -> bool:
        """One look at the Lease and, when allowed, one write; returns whether this process
        leads afterwards. Synchronous: run it in a thread."""
        now = self.clock()
        record = self._read()
        if record is not None:
            seen = (record.holder, record.renew_time, record.resource_version)
            if seen != self._seen:
                self._seen, self._seen_at = seen, now
            if not may_take(record, self.identity, self._seen_at, now):
                self._record = record
                return False
        body = lease_body(
            self.name,
            self.namespace,
            self.identity,
            self.timing,
            previous=record,
            memory=self.memory() if self.leading else (record.memory if record else ""),
            now=datetime.now(UTC),
        )
        try:
            written = self._write(body, create=record is None)
        except ApiException as err:
            if err.status == 409:  # another candidate wrote first: it leads
                return False
            raise
        self._record, self._renewed_at = written, now
        if not self.leading:
            self.leading = True
            log.info("leading: holder of Lease %s/%s", self.namespace, self.name)
            self.on_acquired(record.memory if record else "")
        return True

    async def run(self) -> None:
        """Hold or wait for the Lease until cancelled."""
        while True:
            try:
                held = await asyncio.to_thread(self.try_once)
            except Exception as err:  # the API server is away: keep trying, fence meanwhile
                log.warning("Lease %s/%s: %s", self.namespace, self.name, err)
                held = self.leading and self.may_write()
            if self.leading and not (held and self.may_write()):
                self.leading = False
                log.warning("lost the Lease %s/%s: standing by", self.namespace, self.name)
            await asyncio.sleep(
                self.timing.renew_every_s if self.leading else self.timing.retry_every_s
            )

    def release(self) -> None:
        """Hand the Lease back on a clean stop so a standby takes over at once."""
        if not self.leading or self._record is None:
            return
        self.leading = False
        body = lease_body(
            self.name,
            self.namespace,
            self.identity,
            self.timing,
            previous=self._record,
            memory=self.memory(),
            now=datetime.now(UTC),
            release=True,
        )
        try:
            self._write(body, create=False)
        except Exception as err:  # the standby will wait out the duration instead
            log.warning("could not release Lease %s/%s: %s", self.namespace, self.name, err)

"""Read a vLLM-style /metrics endpoint (the simulator's or a real server's) into samples."""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families


class Samples:
    """The samples of one scrape, parsed by prometheus_client's own exposition parser."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._samples = [
            sample for family in text_string_to_metric_families(text) for sample in family.samples
        ]

    def get(self, name: str, **labels: str) -> float:
        """The one sample called `name` whose labels include `labels`; raises if not exactly one."""
        found = [
            s.value
            for s in self._samples
            if s.name == name and set(labels.items()) <= set(s.labels.items())
        ]
        if len(found) != 1:
            raise LookupError(f"{name}{labels}: expected one sample, found {len(found)}")
        return found[0]

    def labels_of(self, name: str) -> list[dict[str, str]]:
        return [s.labels for s in self._samples if s.name == name]


def scrape(base_url: str, timeout_s: float = 10.0) -> Samples:
    response = requests.get(f"{base_url}/metrics", timeout=timeout_s)
    response.raise_for_status()
    return Samples(response.text)

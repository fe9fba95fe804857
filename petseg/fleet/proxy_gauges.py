"""One gauge of a web proxy, read from its operators' listener (/metrics), as Prometheus reads
it: what the local fleet's autoscaler (petseg.fleet.autoscale) and a drain (petseg.fleet.cluster)
act on."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

TIMEOUT_S = 3.0


def gauge(operator_url: str, name: str, timeout: float = TIMEOUT_S) -> float | None:
    """The value of the unlabelled gauge ``name``; None when the proxy does not answer or does
    not export it (a proxy starting, hung or gone)."""
    try:
        with urllib.request.urlopen(f"{operator_url}/metrics", timeout=timeout) as response:
            text = response.read().decode()
    except (OSError, urllib.error.URLError, ValueError):
        return None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and not sample.labels:
                    return sample.value
    except ValueError:
        return None
    return None

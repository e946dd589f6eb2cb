"""The metric names of the contract: what /metrics serves, what docs/observability.md
lists, and what the Grafana dashboard queries are the same names."""

from __future__ import annotations

import json
import re
from pathlib import Path

from relevo.metrics.exposition import families
from relevo.metrics.figures import Figures

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = {
    "relevo_messages_published_total": ("counter", {"queue"}),
    "relevo_messages_processed_total": ("counter", {"queue", "consumer", "outcome"}),
    "relevo_message_processing_seconds": ("histogram", {"queue", "consumer"}),
    "relevo_message_wait_seconds": ("histogram", {"queue"}),
    "relevo_messages_in_flight": ("gauge", {"queue", "consumer"}),
    "relevo_queue_messages": ("gauge", {"queue", "state"}),
    "relevo_driver_reconnects_total": ("counter", {"driver"}),
    "relevo_entry_up": ("gauge", {"entry"}),
}


def served() -> dict[str, tuple[str, set[str]]]:
    figures = Figures()
    figures.consumer("a:c", "a:q")
    snap = figures.snapshot()
    snap.update(queues={"a:q": {}}, reconnects={"a:d": 0}, up={"a:c": 1})
    found = {}
    for family in families(snap):
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = {k for s in family.samples for k in s.labels if k != "le"}
        found[name] = (family.type, labels)
    return found


def test_the_endpoint_serves_exactly_the_contracts_names_types_and_labels() -> None:
    assert served() == CONTRACT


def test_docs_list_exactly_the_contracts_metrics() -> None:
    text = (ROOT / "docs" / "observability.md").read_text()
    documented = set(re.findall(r"^\| `(relevo_\w+)` \|", text, re.MULTILINE))
    assert documented == set(CONTRACT)


def test_the_grafana_dashboard_queries_only_metrics_that_exist() -> None:
    dashboard = json.loads((ROOT / "examples" / "grafana" / "relevo-dashboard.json").read_text())
    queried = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queried |= set(re.findall(r"relevo_\w+", target["expr"]))
    known = set(CONTRACT) | {f"{name}_bucket" for name, (kind, _) in CONTRACT.items()
                             if kind == "histogram"}
    assert queried
    assert queried <= known

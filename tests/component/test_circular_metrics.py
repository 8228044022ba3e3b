"""Prometheus per destination (issue 11), from a real store of each backend: the
``valise_destinations`` gauge names a site only for destinations still open (sites
of the signed directory, as routed), and counts delivered and failed ones under
site ``""``, so the label set does not grow with the history of the store."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from gateway.runtime.metrics import Metrics
from gateway.store.base import Store
from tests.contract.helpers import HANOI, HQ, T0
from tests.contract.test_store_destinations import ROME, origin_circular, receipt

LIMA = "M-LIMA"


def samples(text: bytes, name: str) -> dict[tuple[str, str], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            if s.name == name:
                out[(s.labels["site"], s.labels.get("state", s.labels.get("role", "")))] = s.value
    return out


async def test_open_destinations_are_per_site_and_closed_ones_are_not(store: Store) -> None:
    m = await origin_circular(store, 1, (HQ, HANOI, ROME, LIMA))
    await store.record_receipts([receipt(1, HQ)], now=T0)
    await store.fail(m, HQ, reason="refused by HQ: test", now=T0)  # closes the rest via HQ
    m2 = await origin_circular(store, 2, (HANOI, ROME))
    await store.record_receipts([receipt(2, HANOI)], now=T0)
    metrics = Metrics()
    metrics.destination_receipts.labels(HANOI, "verified").inc()
    text = metrics.render(
        await store.depths(),
        datetime(2027, 1, 1, tzinfo=UTC),
        1,
        destinations=await store.destination_depths(),
    )
    gauge = samples(text, "valise_destinations")
    # Message 1: HQ delivered, three failed; message 2: M-HANOI delivered, M-ROME open.
    assert gauge == {("", "delivered"): 2.0, ("", "failed"): 3.0, (ROME, "forwarded"): 1.0}
    assert samples(text, "valise_destination_receipts_total") == {(HANOI, "verified"): 1.0}
    assert m != m2

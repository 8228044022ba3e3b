"""Prometheus metrics of one running site (prometheus-client, one registry per process)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Hop latency buckets in seconds: loopback to a slow satellite link.
HOP_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.queue_depth = Gauge(
            "valise_queue_depth",
            "Deliveries per next hop and state.",
            ["peer", "state"],
            registry=r,
        )
        self.hop_latency = Histogram(
            "valise_hop_latency_seconds",
            "Time to post a batch and get its acknowledgements.",
            ["peer"],
            buckets=HOP_BUCKETS_S,
            registry=r,
        )
        self.retries = Counter(
            "valise_retries_total", "Batches deferred after a failed hop.", ["peer"], registry=r
        )
        self.forwarded = Counter(
            "valise_forwarded_total", "Envelopes acknowledged by a peer.", ["peer"], registry=r
        )
        self.accepted = Counter(
            "valise_accepted_total",
            "Envelopes accepted from a peer.",
            ["peer", "outcome"],
            registry=r,
        )
        self.refused = Counter(
            "valise_refused_total", "Envelopes refused from a peer.", ["peer"], registry=r
        )
        self.delivered = Counter(
            "valise_delivered_here_total", "Envelopes opened and made available here.", registry=r
        )
        self.receipts = Counter(
            "valise_receipts_verified_total",
            "Receipts verified for messages sent from here.",
            registry=r,
        )
        self.destination_receipts = Counter(
            "valise_destination_receipts_total",
            "Receipts per destination: verified at the origin, relayed at the hub.",
            ["site", "role"],
            registry=r,
        )
        self.destinations = Gauge(
            "valise_destinations",
            "Destinations per state (open ones per site; delivered and failed under site '').",
            ["site", "state"],
            registry=r,
        )
        self.key_expiry = Gauge(
            "valise_key_expiry_seconds",
            "Seconds until this site's public key document expires.",
            registry=r,
        )
        self.directory_serial = Gauge(
            "valise_directory_serial", "Serial of the directory in force.", registry=r
        )
        self.directory_age = Gauge(
            "valise_directory_age_seconds",
            "Seconds since a mission last fetched its directory from HQ (0 at HQ).",
            registry=r,
        )

    def render(
        self,
        depths: dict[tuple[str, str], int],
        key_valid_until: datetime,
        directory_serial: int,
        directory_age: float | None = None,
        destinations: dict[tuple[str, str], int] | None = None,
    ) -> bytes:
        self.queue_depth.clear()
        for (peer, state), n in depths.items():
            self.queue_depth.labels(peer, state).set(n)
        self.destinations.clear()
        for (site, state), n in (destinations or {}).items():
            self.destinations.labels(site, state).set(n)
        self.key_expiry.set((key_valid_until - datetime.now(UTC)).total_seconds())
        self.directory_serial.set(directory_serial)
        self.directory_age.set(directory_age or 0.0)  # None: HQ, which publishes it
        return generate_latest(self.registry)

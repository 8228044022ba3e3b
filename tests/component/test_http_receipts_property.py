"""``/v1/documents/{id}/receipts/{site}`` (and ``/receipt``) under any path segment
(issue 11), against the real app (auth middleware, handlers) over a real site store (HQ, SQLite): a
circular to M-HANOI (receipt in) and M-ROME (open), submitted by integrator ``dms``.

Properties, for any text as the site segment:
- ``dms`` gets 200 and M-HANOI's receipt bytes only for ``M-HANOI``; anything else
  (M-ROME with no receipt yet, a site that is not a destination, a malformed one) is
  404 ``not_found`` JSON, never a 500;
- integrator ``rival`` gets the same 404 for every segment, with the words it got
  before circulars (its requests say nothing of the message's destinations).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envelope.values import SITE_ID_RE
from gateway.bridges.http.api import make_app
from gateway.bridges.http.common import ApiState
from gateway.bridges.integrators import new_token, token_sha256
from gateway.bridges.webhooks import Webhooks
from gateway.demo.network import free_port
from gateway.site.context import SiteContext, load_site
from gateway.store.base import ReceiptRecord, Submission
from gateway.trust.enroll import init_hub
from tests.contract.helpers import record

HANOI, ROME = "M-HANOI", "M-ROME"
RECEIPT = b"receipt-envelope-of-M-HANOI"


@dataclass
class Served:
    loop: asyncio.AbstractEventLoop
    client: TestClient  # type: ignore[type-arg]
    ctx: SiteContext
    message_id: str
    tokens: dict[str, str]

    def get(self, path: str, who: str) -> tuple[int, str, bytes]:
        async def go() -> tuple[int, str, bytes]:
            headers = {"Authorization": f"Bearer {self.tokens[who]}"}
            async with self.client.get(path, headers=headers) as r:
                return r.status, r.content_type, await r.read()

        return self.loop.run_until_complete(go())


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    loop = asyncio.new_event_loop()
    init_hub(tmp_path / "hq", site="HQ", listen=f"127.0.0.1:{free_port()}")
    ctx = loop.run_until_complete(load_site(tmp_path / "hq"))
    api = ApiState(ctx, Webhooks(ctx, timeout_seconds=5), 1 << 20, tmp_path / "work")
    client: TestClient = TestClient(TestServer(make_app(api)), loop=loop)  # type: ignore[type-arg]

    async def setup() -> tuple[str, dict[str, str]]:
        await client.start_server()
        now = datetime.now(UTC)
        tokens = {}
        for name in ("dms", "rival"):
            tokens[name] = new_token()
            await ctx.store.integrator_add(
                name,
                token_sha256=token_sha256(tokens[name]),
                webhook_url=None,
                webhook_secret=None,
                now=now,
            )
        rec = replace(
            record(1, destinations=(HANOI, ROME), expires=now + timedelta(days=1)),
            origin="HQ",
            routes=((HANOI, HANOI), (ROME, ROME)),
        )
        await ctx.store.submission_reserve(
            Submission(rec.message_id, "dms", None, "f" * 64, now), forget_before=now
        )
        await ctx.store.accept(
            rec, next_hops=[HANOI, ROME], deliver_here=False, hop_ack=None, now=now
        )
        await ctx.store.record_receipts(
            [ReceiptRecord(rec.message_id, HANOI, bytes(32), rec.digest, RECEIPT)], now=now
        )
        return rec.message_id, tokens

    m, tokens = loop.run_until_complete(setup())
    try:
        yield Served(loop, client, ctx, m, tokens)
    finally:
        loop.run_until_complete(client.close())
        loop.run_until_complete(ctx.store.close())
        loop.close()


SEGMENTS = st.one_of(
    st.sampled_from([HANOI, ROME, "HQ", "M-PARIS", "m-hanoi", "M-HANOI ", "..", "%00"]),
    st.from_regex(r"[A-Z][A-Z0-9-]{1,40}", fullmatch=True),
    st.text(min_size=1, max_size=60),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(segment=SEGMENTS)
def test_only_a_receipted_destination_is_served_and_nothing_crashes(
    served: Served, segment: str
) -> None:
    m = served.message_id
    path = f"/v1/documents/{m}/receipts/{quote(segment, safe='')}"
    status, ctype, body = served.get(path, "dms")
    if segment == HANOI:
        assert (status, ctype, body) == (200, "application/vnd.valise.envelope", RECEIPT)
    else:
        assert status == 404 and ctype == "application/json", (segment, status, body)
        assert json.loads(body)["code"] == "not_found"
    status, ctype, body = served.get(path, "rival")
    assert (status, ctype) == (404, "application/json"), segment
    answer = json.loads(body)
    owned = f"no document {m} submitted by this integrator"
    if SITE_ID_RE.fullmatch(segment):  # any site id: exactly the words of before
        assert answer == {"code": "not_found", "message": owned}, segment
    else:  # else that, or the router's own 404 (the path is no document's resource)
        assert answer["code"] == "not_found" and answer["message"] in (owned, "Not Found")


def test_the_single_receipt_of_a_circular_is_409_and_another_integrator_gets_404(
    served: Served,
) -> None:
    # (The status document itself is tested on a real network: this store holds no
    # real envelope bytes to read the routing from.)
    m = served.message_id
    status, _, body = served.get(f"/v1/documents/{m}/receipt", "dms")
    assert status == 409 and json.loads(body)["code"] == "circular"
    assert f"/v1/documents/{m}/receipts/" in json.loads(body)["message"]
    for path in (f"/v1/documents/{m}", f"/v1/documents/{m}/receipt"):
        status, _, body = served.get(path, "rival")
        assert status == 404 and json.loads(body)["code"] == "not_found"

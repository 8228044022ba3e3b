"""The channel's client half: POST a batch of envelopes to a peer's /v1/hop, GET HQ's
directory. Both raise PeerError (retry later) on anything but a well-formed answer."""

from __future__ import annotations

from typing import Any

from aiohttp import ClientSession, ClientTimeout

from gateway.relay.hop import MEDIA_TYPE
from gateway.runtime.errors import PeerError


async def post_batch(
    session: ClientSession,
    endpoint: str,
    peer: str,
    envelopes: list[bytes],
    timeout: float,
) -> list[dict[str, Any]]:
    """POST envelopes to ``peer``; return its per-envelope results. Raises PeerError."""
    try:
        async with session.post(
            f"{endpoint}/v1/hop",
            data=b"".join(envelopes),
            headers={"Content-Type": MEDIA_TYPE},
            timeout=ClientTimeout(total=timeout),
        ) as resp:
            if resp.status != 200:
                raise PeerError(f"{peer} answered {resp.status}: {(await resp.text())[:200]}")
            answer = await resp.json()
    except (OSError, TimeoutError) as exc:
        raise PeerError(f"{peer} unreachable: {exc}") from None
    except Exception as exc:
        if isinstance(exc, PeerError):
            raise
        raise PeerError(f"{peer}: {type(exc).__name__}: {exc}") from None
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list) or len(results) != len(envelopes):
        raise PeerError(f"{peer} answered a malformed result list")
    return results


async def fetch_directory(session: ClientSession, endpoint: str, hub: str, timeout: float) -> bytes:
    try:
        async with session.get(
            f"{endpoint}/v1/directory", timeout=ClientTimeout(total=timeout)
        ) as resp:
            if resp.status != 200:
                raise PeerError(f"{hub} answered {resp.status}")
            return await resp.read()
    except (OSError, TimeoutError) as exc:
        raise PeerError(f"{hub} unreachable: {exc}") from None

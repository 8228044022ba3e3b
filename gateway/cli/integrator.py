"""``valise integrator add | list | revoke``: the HTTP API's clients at this site.

``add`` prints the new bearer token on stdout (and, with ``--webhook``, the webhook
signing secret on the next line): both are shown this once; the store keeps only
the token's SHA-256. The running site sees a new or revoked token at once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from envelope.errors import UsageError
from envelope.values import format_time
from gateway.bridges.integrators import (
    IntegratorError,
    check_name,
    check_webhook_url,
    new_token,
    new_webhook_secret,
    token_sha256,
)
from gateway.cli.app import one_line_errors
from gateway.cli.common import DIR_OPTION, JSON_OPTION, emit, json_option, with_site
from gateway.site.context import SiteContext
from gateway.store.base import StoreError


@click.group("integrator")
def integrator_group() -> None:
    """Integrators of the HTTP API: bearer tokens and webhooks."""


@integrator_group.command("add")
@click.argument("name")
@click.option("--webhook", "webhook", default=None, help="URL to POST signed events to.")
@DIR_OPTION
@json_option("Print name, token and secret as JSON.")
@one_line_errors
def integrator_add(name: str, webhook: str | None, directory: Path | None, as_json: bool) -> None:
    """Create integrator NAME and print its bearer token (shown once)."""
    try:
        check_name(name)
        if webhook is not None:
            check_webhook_url(webhook)
    except IntegratorError as exc:
        raise UsageError(str(exc)) from None
    token = new_token()
    secret = new_webhook_secret() if webhook else None

    async def go(ctx: SiteContext) -> None:
        try:
            await ctx.store.integrator_add(
                name,
                token_sha256=token_sha256(token),
                webhook_url=webhook,
                webhook_secret=secret,
                now=datetime.now(UTC),
            )
        except StoreError as exc:
            raise UsageError(str(exc)) from None

    with_site(directory, go)
    if as_json:
        click.echo(json.dumps({"name": name, "token": token, "webhook_secret": secret}))
    else:
        click.echo(token)
        if secret:
            click.echo(secret)
    note = " and its webhook secret (second line)" if secret and not as_json else ""
    click.echo(
        f"valise: integrator {name} added; its bearer token{note} is shown this once", err=True
    )


@integrator_group.command("list")
@DIR_OPTION
@JSON_OPTION
@one_line_errors
def integrator_list(directory: Path | None, as_json: bool) -> None:
    """Integrators, active and revoked (tokens are never shown again)."""

    async def go(ctx: SiteContext) -> list[dict[str, Any]]:
        return [
            {
                "name": i.name,
                "status": "revoked" if i.revoked else "active",
                "webhook": i.webhook_url or "",
                "created": format_time(i.created),
                "revoked": format_time(i.revoked) if i.revoked else "",
            }
            for i in await ctx.store.integrators()
        ]

    emit(
        with_site(directory, go),
        as_json,
        [
            ("name", "NAME", 20),
            ("status", "STATUS", 9),
            ("created", "CREATED", 22),
            ("revoked", "REVOKED", 22),
            ("webhook", "WEBHOOK", 40),
        ],
    )


@integrator_group.command("revoke")
@click.argument("name")
@DIR_OPTION
@one_line_errors
def integrator_revoke(name: str, directory: Path | None) -> None:
    """Revoke NAME's token: its requests get 401 from now on, its webhooks stop."""

    async def go(ctx: SiteContext) -> bool:
        return await ctx.store.integrator_revoke(name, now=datetime.now(UTC))

    if not with_site(directory, go):
        raise UsageError(f"no active integrator {name}")
    click.echo(f"valise: integrator {name} revoked", err=True)

"""SMTP AUTH for the bridge: PLAIN and LOGIN, over TLS only, against integrator tokens.

An SMTP client authenticates as an integrator of the site (``valise integrator
add``, the same registry as the HTTP API's bearer tokens): the user name is the
integrator's name and the password its token. Only the token's SHA-256 is looked up
(see gateway/bridges/integrators.py); a revoked token fails. AUTH is refused before
STARTTLS (``538 5.7.11``, aiosmtpd's ``auth_require_tls``) so that no token ever
crosses the wire in the clear, and AUTH is not even advertised until then.
"""

from __future__ import annotations

import hmac

from gateway.bridges.integrators import looks_like_token, token_sha256
from gateway.site.context import SiteContext


async def verify_integrator_token(ctx: SiteContext, token: str) -> str | None:
    """The name of the active integrator holding ``token``, or None."""
    if not looks_like_token(token):
        return None
    integrator = await ctx.store.integrator_for_token(token_sha256(token))
    if integrator is None or integrator.revoked is not None:
        return None
    return integrator.name


async def authenticate(ctx: SiteContext, login: bytes, password: bytes) -> str | None:
    """The integrator ``login`` if ``password`` is its token, else None."""
    try:
        name, token = login.decode("utf-8"), password.decode("utf-8")
    except UnicodeDecodeError:
        return None
    holder = await verify_integrator_token(ctx, token)
    if holder is None or not hmac.compare_digest(holder.encode(), name.encode()):
        return None
    return holder

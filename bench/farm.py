"""``python -m bench.farm --ready FILE DIR...``: many mission sites in one process.

For the circular bench (bench/circular.py): each folder is a site joined to HQ with its
own keys, TLS certificate, SQLite store (its own file and thread) and channel listener.
Every site runs the same composition as ``valise serve`` (gateway/service/serve.py): the real
background workers (couriers, local delivery, key watcher, directory poll, stamper,
audit checkpointer) and the real channel app behind mutual TLS; only the operations
listener, the integrators' bridges and the signal handling per site are left out. They
share one asyncio loop, one core and one GIL: the mission side is pessimistic.

The ready file is written (whole, then renamed) once every site listens; SIGTERM stops
them all. Logs are JSON at WARNING (97 sites at INFO would flood the log).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from config.site import split_hostport
from gateway.runtime.logjson import JsonFormatter
from gateway.service.serve import SERVER_TLS, site_app
from gateway.site.context import SiteContext, load_site
from gateway.site.modes import SITE_UMASK


@dataclass
class Hosted:
    ctx: SiteContext
    runner: web.AppRunner


async def host(directory: Path) -> Hosted:
    """Start one site as gateway/service/serve.py does (its site_app: store, re-check,
    workers under cleanup_ctx), minus the ops listener and the bridges."""
    ctx = await load_site(directory)
    app = site_app(ctx, bridges=False)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    try:
        await runner.setup()
        h, port = split_hostport(ctx.config.site.listen, "[site] listen")
        site = web.TCPSite(runner, h, port, ssl_context=app[SERVER_TLS], shutdown_timeout=5)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return Hosted(ctx, runner)


async def stop(hosted: Hosted) -> None:
    await hosted.runner.cleanup()  # the listener, then the workers, then the store


async def farm(directories: list[Path], ready: Path) -> None:
    os.umask(SITE_UMASK)
    sites: list[Hosted] = []
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    try:
        for directory in directories:
            sites.append(await host(directory))
        staged = ready.with_name(ready.name + ".tmp")
        staged.write_text(json.dumps({"sites": [h.ctx.here for h in sites], "pid": os.getpid()}))
        staged.replace(ready)
        await done.wait()
    finally:
        await asyncio.gather(*(stop(h) for h in sites), return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.farm", description=__doc__)
    parser.add_argument("--ready", type=Path, required=True, help="written once all listen")
    parser.add_argument("directories", type=Path, nargs="+", help="joined site folders")
    args = parser.parse_args()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    asyncio.run(farm(args.directories, args.ready))


if __name__ == "__main__":
    main()

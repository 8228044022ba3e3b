"""A whole Valise network on loopback, as separate processes: for the demo, the
end-to-end and kill -9 tests, and the relay benchmark.

Each site runs ``python -m gateway serve`` in its own process group, on free
127.0.0.1 ports, with the embedded SQLite store (or PostgreSQL when a DSN is
given). Sites stop by themselves when the Network is closed (SIGTERM, then
SIGKILL), and ``kill()`` sends SIGKILL to test durability.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType

from config.sections import StoreSection
from config.site import SiteConfig, load_site_config, render_site_config
from gateway.trust.enroll import add_site, init_hub, join

READY_TIMEOUT_S = 20.0


_HANDED_OUT: set[int] = set()
_LOW_PORT = 20000


def _ephemeral_floor() -> int:
    """The lowest port the kernel hands to `bind(port=0)` (Linux: ip_local_port_range)."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port free now, chosen *below* the kernel's ephemeral range.

    A site's listen port is written into the signed directory before the site starts,
    so it is picked early; a port from the ephemeral range could meanwhile be handed
    by the kernel to another site's ops, HTTP or SMTP listener (they bind port 0),
    and the site would then fail to start with EADDRINUSE (seen once in CI). Ports
    below that range are never handed out by the kernel; this process never hands
    one out twice, and each is checked bindable before it is returned."""
    floor = _ephemeral_floor()
    rng = random.SystemRandom()
    if floor - _LOW_PORT >= 1000:
        for _ in range(200):
            port = rng.randrange(_LOW_PORT, floor)
            if port in _HANDED_OUT:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _HANDED_OUT.add(port)
            return port
    with socket.socket() as s:  # no room below the ephemeral range: the kernel's pick
        s.bind(("127.0.0.1", 0))
        picked: int = s.getsockname()[1]
        return picked


@dataclass
class SiteProcess:
    site: str
    directory: Path
    port: int
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    ops_port: int = 0
    ports: dict[str, int] = field(default_factory=dict)  # ops, http, smtp

    def start(self) -> None:
        ready = self.directory / ".ready"
        ready.unlink(missing_ok=True)
        log = self.log.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--dir",
                str(self.directory),
                "--ready-file",
                str(ready),
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
            env={**os.environ, **self.env},
        )
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready.exists():
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.site} exited: see {self.log}; it ends:\n{tail}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.site} did not become ready: see {self.log}")
            time.sleep(0.05)
        self.ports = {k.removesuffix("_port"): v for k, v in json.loads(ready.read_text()).items()}
        self.ops_port = self.ports["ops"]

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Network:
    """HQ plus missions in ``root``; use as a context manager."""

    def __init__(
        self,
        root: Path,
        missions: tuple[str, ...] = ("M-PARIS", "M-HANOI"),
        *,
        hub: str = "HQ",
        env: dict[str, str] | None = None,
        site_env: dict[str, dict[str, str]] | None = None,
        postgres_dsn: str | None = None,
        configure: Callable[[SiteConfig], SiteConfig] | None = None,
    ) -> None:
        """``configure``, if given, rewrites each site's valise.toml before it starts
        (for the drills' short intervals, set as an operator would)."""
        self.root = root
        self.hub = hub
        self.mission_ids = missions
        self.env = env or {}
        self.site_env = site_env or {}
        self.postgres_dsn = postgres_dsn
        self.configure = configure
        self.sites: dict[str, SiteProcess] = {}

    @staticmethod
    def schema_of(site: SiteProcess) -> str:
        return f"valise_{site.site.lower().replace('-', '_')}_{site.port}"

    def _use_store(self, site: SiteProcess) -> None:
        """Point the site at PostgreSQL (one schema per site and network) if asked, and
        apply ``configure``."""
        if self.postgres_dsn is None and self.configure is None:
            return
        config = load_site_config(site.directory, {})
        if self.postgres_dsn is not None:
            schema = self.schema_of(site)
            store = StoreSection(backend="postgres", dsn=self.postgres_dsn, schema=schema)
            config = replace(config, store=store)
        if self.configure is not None:
            config = self.configure(config)
        (site.directory / "valise.toml").write_text(render_site_config(config))

    def _site(self, site: str) -> SiteProcess:
        env = {**self.env, **self.site_env.get(site, {})}
        return SiteProcess(site, self.root / site, free_port(), self.root / f"{site}.log", env)

    def start(self) -> Network:
        """Create and start every site. Call from synchronous code (it runs the joins).
        If any site fails to start, the ones already running are stopped."""
        try:
            return self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> Network:
        self.root.mkdir(parents=True, exist_ok=True)
        hq = self._site(self.hub)
        init_hub(hq.directory, site=self.hub, listen=f"127.0.0.1:{hq.port}")
        self._use_store(hq)
        self.sites[self.hub] = hq
        hq.start()
        for mission in self.mission_ids:
            m = self._site(mission)
            bundle = self.root / f"{mission}.bundle"
            add_site(hq.directory, mission, f"https://127.0.0.1:{m.port}", bundle)
            asyncio.run(join(bundle, m.directory, listen=f"127.0.0.1:{m.port}"))
            bundle.unlink()
            self._use_store(m)
            self.sites[mission] = m
        for mission in self.mission_ids:
            self.sites[mission].start()
        return self

    def close(self) -> None:
        for site in reversed(list(self.sites.values())):
            site.stop()
        if self.postgres_dsn is not None:
            asyncio.run(self._drop_schemas())

    async def _drop_schemas(self) -> None:
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(self.postgres_dsn)
        try:
            for site in self.sites.values():
                schema = self.schema_of(site)
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    def __enter__(self) -> Network:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

"""Component tests: the couriers, the hop handler, local delivery and the HTTP API in
this process, over in-memory stores (gateway/store/memory.py), with no process
started: three site folders (HQ, M-PARIS, M-HANOI) enrolled once per session
(tests/component/support.py), copied for each test, every site loaded over its own
MemoryStore. (The session's real enrolment keeps HQ's enrolment records in its
configured SQLite file while the folders are built; the file is removed after, and no
test reads or writes a database.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.component.support import Net, build_network, open_net
from tests.support.pg import pg_dsn, pg_schema, sqlite_path, store  # noqa: F401 - fixtures


@pytest.fixture(scope="session")
def network_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three enrolled site folders, built once; tests use copies (``net``)."""
    root = tmp_path_factory.mktemp("component") / "template"
    build_network(root)
    return root


@pytest.fixture
async def net(network_template: Path, tmp_path: Path) -> AsyncIterator[Net]:
    """A copy of the network's folders, each site loaded over a fresh MemoryStore."""
    network = await open_net(network_template, tmp_path / "net")
    try:
        yield network
    finally:
        for ctx in network.sites.values():
            await ctx.store.close()

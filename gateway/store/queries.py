"""Named SQL queries, read once from the package's .sql files.

A concern's queries are the ``-- name: xyz`` blocks of

- ``sql/queries/<concern>.sql``: standard SQL that both backends run as written, and
- ``sql/queries/<concern>.<backend>.sql``: the queries whose SQL differs per backend,
  each backend's file naming the same queries (checked when loaded).

(All in one folder: the package data pattern ships ``sql/*/*.sql``.) A block whose name
starts with ``_`` is a fragment: no query of its own, it may be empty, and a shared query
takes its text where it says ``/*_name*/``; so one query can differ per backend by a
clause, e.g. PostgreSQL's ``FOR UPDATE SKIP LOCKED``. A fragment in the shared file is
text several shared queries repeat (an expression, say).

A block is everything from its ``-- name:`` line to the next one (comments included).
Parameters are written ``:name`` (a ``::type`` cast is not one, nor anything inside a
quoted literal or a comment); for PostgreSQL they become ``$1``, ``$2`` … in order of
first use, for SQLite they stay named. No name is defined twice. A list parameter is
tested with ``x = ANY(:name)``: PostgreSQL runs it as written (the list an array), SQLite
as ``x IN (SELECT value FROM json_each(:name))`` (its driver passes a list as JSON text).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from gateway.store.records import StoreError

BACKENDS = ("sqlite", "postgres")
_NAME_LINE = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$")
# A quoted literal, a quoted identifier, a line comment, a cast, or a parameter.
# ``= ANY(:name)``: membership in a list parameter (group 2).
_TOKEN = re.compile(
    r"'(?:[^']|'')*'|\"[^\"]*\"|--[^\n]*|::|:([A-Za-z_][A-Za-z0-9_]*)"
    r"|=\s*ANY\s*\(\s*:([A-Za-z_][A-Za-z0-9_]*)\s*\)"
)


@dataclass(frozen=True)
class Query:
    """One query, as its backend runs it; ``params``: the parameter names, in the order
    PostgreSQL's ``$n`` take them (SQLite binds them by name)."""

    name: str
    sql: str
    params: tuple[str, ...]

    def args(self, values: dict[str, Any]) -> list[Any]:
        """The parameters in ``$n`` order. Raises StoreError if one is missing."""
        try:
            return [values[p] for p in self.params]
        except KeyError as exc:
            raise StoreError(f"query {self.name}: no value for :{exc.args[0]}") from None


def translate(sql: str, backend: str) -> tuple[str, tuple[str, ...]]:
    """``sql`` with its ``:name`` parameters as ``backend`` takes them, and their names."""
    order: list[str] = []

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name is None:
            return m.group(0)
        if name not in order:
            order.append(name)
        if m.group(2) is None:
            return f":{name}" if backend == "sqlite" else f"${order.index(name) + 1}"
        if backend == "sqlite":
            return f" IN (SELECT value FROM json_each(:{name}))"  # noqa: S608 - a name
        return f"= ANY(${order.index(name) + 1})"

    return _TOKEN.sub(sub, sql), tuple(order)


def parse(text: str, where: str = "?") -> dict[str, str]:
    """The ``-- name:`` blocks of ``text``: name -> SQL. Raises StoreError."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        m = _NAME_LINE.match(line.strip())
        if m:
            if m.group(1) in blocks:
                raise StoreError(f"{where}:{number}: query {m.group(1)} defined twice")
            current = blocks[m.group(1)] = []
        elif current is not None:
            current.append(line)
        elif line.strip() and not line.lstrip().startswith("--"):
            raise StoreError(f"{where}:{number}: SQL before the first '-- name:' line")
    out: dict[str, str] = {}
    for name, lines in blocks.items():
        body = "\n".join(lines).strip()
        if not name.startswith("_") and not _code(lines):
            raise StoreError(f"{where}: query {name} is empty")
        out[name] = body
    return out


def _code(lines: list[str]) -> str:
    """The lines that are not comments, joined."""
    return "\n".join(s for s in lines if s.strip() and not s.lstrip().startswith("--"))


def _read(*parts: str) -> dict[str, str] | None:
    path = resources.files("gateway.store").joinpath("sql", *parts)
    if not path.is_file():
        return None
    return parse(path.read_text("utf-8"), "/".join(parts))


class Queries:
    """A concern's queries for one backend, by attribute: ``q.integrator_add``."""

    def __init__(self, concern: str, backend: str, queries: dict[str, Query]):
        self.concern = concern
        self.backend = backend
        self._queries = queries

    def __getattr__(self, name: str) -> Query:
        try:
            return self.__dict__["_queries"][name]  # type: ignore[no-any-return]
        except KeyError:
            raise AttributeError(f"no query {name} in {self.concern} ({self.backend})") from None

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._queries)


@functools.cache
def load(backend: str, concern: str) -> Queries:
    """The queries of ``concern`` for ``backend`` (read and checked once per process).
    Raises StoreError if the files are missing, malformed or disagree."""
    if backend not in BACKENDS:
        raise StoreError(f"unknown store backend {backend!r}")
    shared = _read("queries", f"{concern}.sql") or {}
    own = {b: _read("queries", f"{concern}.{b}.sql") for b in BACKENDS}
    mine = own[backend] or {}
    if not shared and not mine:
        raise StoreError(f"no queries for {concern} ({backend})")
    both = sorted(set(shared) & set(mine))
    if both:
        raise StoreError(f"{concern}: {', '.join(both)} both shared and per backend")
    other = next(b for b in BACKENDS if b != backend)
    if own[backend] is not None and own[other] is not None and set(mine) != set(own[other] or {}):
        odd = sorted(set(mine) ^ set(own[other] or {}))
        raise StoreError(f"{concern}: the backends' queries differ: {', '.join(odd)}")
    fragments = {
        f"/*{n}*/": _code(sql.splitlines()) for n, sql in {**shared, **mine}.items() if n[0] == "_"
    }
    out: dict[str, Query] = {}
    for name, sql in {**shared, **mine}.items():
        if name.startswith("_"):
            continue
        for mark, fragment in fragments.items():
            sql = sql.replace(mark, fragment)
        if "/*_" in sql:
            raise StoreError(f"{concern}.{name}: a fragment this backend does not define")
        text, params = translate(sql, backend)
        out[name] = Query(f"{concern}.{name}", text, params)
    return Queries(concern, backend, out)

"""Where lakeloop's own state lives: a SQLite file under the state dir (the default) or the database named by
`LAKELOOP_STATE_URL` (a SQLAlchemy URL, e.g. PostgreSQL shared by every bridge and worker host).

One code path for both: the stores write portable SQL (`INSERT ... ON CONFLICT`, `RETURNING`) through a
`StateDB`, whose write transactions serialize what they must on either database:

* SQLite: `BEGIN IMMEDIATE` takes the file's write lock up front (WAL lets readers run beside it).
* PostgreSQL: rows a transaction decides on are read `FOR UPDATE` (`StateDB.for_update`), and a store
  that must serialize a whole queue takes a transaction-scoped advisory lock (`StateDB.serialize`), the
  equivalent of SQLite's one writer. Tables live in the `lakeloop` schema, so they sit beside Prefect's own
  tables when both share one database.

Engines are made once per (process, URL): stores are opened on every request.
"""

from __future__ import annotations

import os
import re
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Self

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from lakeloop.settings import get_settings

PG_SCHEMA = "lakeloop"

_engines: OrderedDict[tuple[int, str], Engine] = OrderedDict()
_engines_lock = threading.Lock()
MAX_ENGINES = 32  # a process opening many state dirs (tests) keeps only the recent pools' connections open


def state_target(state_dir: Path, filename: str) -> Path | str:
    """The database a store under `state_dir` uses: `LAKELOOP_STATE_URL` when set, else its own SQLite file."""
    url = get_settings().state_url
    return url if url else Path(state_dir) / filename


def _sqlite_engine(path: Path) -> Engine:
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 30, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # transactions are the ones `begin` below opens, nothing implicit
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("lakeloop_write") else "BEGIN")

    return engine


def _server_engine(url: str) -> Engine:
    if not sa.engine.make_url(url).get_backend_name() == "postgresql":
        raise ValueError(f"LAKELOOP_STATE_URL: only sqlite:/// paths and postgresql:// URLs are supported, got {url!r}")
    engine = sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10,
                              connect_args={"options": f"-c search_path={PG_SCHEMA}"})
    with engine.begin() as c:  # two processes creating the schema at once would collide on its name
        c.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_id("schema")})
        c.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}"))
    return engine


def _lock_id(name: str) -> int:
    return zlib.crc32(f"lakeloop:{name}".encode())


def engine_for(target: Path | str) -> Engine:
    key = (os.getpid(), str(target))
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engine(target)
            _engines[key] = engine
            if len(_engines) > MAX_ENGINES:  # still usable by a store holding it: it reconnects on next use
                _engines.popitem(last=False)[1].dispose()
        _engines.move_to_end(key)
        return engine


def _engine(target: Path | str) -> Engine:
    if isinstance(target, str) and "://" in target:
        if target.startswith("sqlite:///"):
            return _sqlite_engine(Path(target.removeprefix("sqlite:///")))
        return _server_engine(target)
    return _sqlite_engine(Path(target))


class StateDB:
    """A store's handle on its database (`target`: a SQLite path, or a SQLAlchemy URL)."""

    def __init__(self, target: Path | str) -> None:
        self.target = target
        self.engine = engine_for(target)
        self.dialect = self.engine.dialect.name

    @property
    def for_update(self) -> str:
        """Suffix of a SELECT whose rows the transaction goes on to change (SQLite already holds the lock)."""
        return " FOR UPDATE" if self.dialect == "postgresql" else ""

    def create(self, *statements: str) -> None:
        """Idempotent DDL (`CREATE ... IF NOT EXISTS`), serialized so two processes starting at once agree."""
        with self.write() as c:
            self.serialize(c, "ddl")
            for s in statements:
                c.execute(sa.text(ddl(self, s)))

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction, all or nothing; on SQLite it holds the write lock from its first statement."""
        with self.engine.connect().execution_options(lakeloop_write=True) as c, c.begin():
            yield c

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as c, c.begin():
            yield c

    def serialize(self, c: Connection, name: str) -> None:
        """Let one transaction at a time past this point for `name` (PostgreSQL advisory lock, freed at commit;
        SQLite's write transaction is that already)."""
        if self.dialect == "postgresql":
            c.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_id(name)})


def ddl(db: StateDB, statement: str) -> str:
    """SQLite DDL `statement` as `db`'s dialect spells it: on PostgreSQL REAL (4 bytes there) is DOUBLE
    PRECISION and an AUTOINCREMENT key is BIGSERIAL."""
    if db.dialect != "postgresql":
        return statement
    statement = statement.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
    return re.sub(r"\bREAL\b", "DOUBLE PRECISION", statement)


class StateTable:
    """Base of a store called now and then (outboxes, label ledgers): its table is created on open; every call
    runs in its own transaction on `self.db` (`self.db.write()` / `self.db.read()`)."""

    schema: ClassVar[str | tuple[str, ...]]  # CREATE ... IF NOT EXISTS statement(s), SQLite spelling
    filename: ClassVar[str] = ""  # its SQLite file under the state dir (`at`)

    def __init__(self, path: Path | str) -> None:
        self.path = path if isinstance(path, str) and "://" in path else Path(path)
        self.db = StateDB(self.path)
        self.db.create(*((self.schema,) if isinstance(self.schema, str) else self.schema))

    @classmethod
    def at(cls, state_dir: Path) -> Self:
        """The stack's store under `state_dir` (or in `LAKELOOP_STATE_URL`'s database when set)."""
        return cls(state_target(state_dir, cls.filename))



def insert_new(c: Connection, sql: str, rows: Sequence[dict[str, Any]]) -> int:
    """Run `INSERT ... ON CONFLICT DO NOTHING` once per row (an executemany's rowcount is not portable);
    how many were new."""
    statement = sa.text(sql)
    return sum(c.execute(statement, r).rowcount for r in rows)


def describe(target: Path | str) -> str:
    """`target` fit for a log line: a URL's password hidden."""
    if isinstance(target, str) and "://" in target:
        return sa.engine.make_url(target).render_as_string(hide_password=True)
    return str(target)

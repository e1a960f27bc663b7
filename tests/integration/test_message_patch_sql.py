# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The SQL of the patched listeners, run the way Letta runs it, against a real
SQLite and a real PostgreSQL (a throwaway cluster from conftest.postgres)."""

import re
import sqlite3

import psycopg2
import psycopg2.errors
import pytest

from ansible_collections.hybridstack.letta_livekit.plugins.module_utils import letta_message_patch as lmp

SQL_BLOCK = re.compile(r'text\(\s*"""(.*?)"""', re.DOTALL)
# Letta's messages table as far as the listeners see it.
MESSAGES = "CREATE TABLE messages (id TEXT PRIMARY KEY, sequence_id BIGINT UNIQUE)"
EXISTING = 5


def listeners(text):
    """{name: [sql, ...]} of the two sequence listeners, blocks in file order."""
    found = {}
    for chunk in text.split("@event.listens_for(")[1:]:
        name = re.search(r"def (\w+)\(", chunk).group(1)
        found[name] = [" ".join(block.split()) for block in SQL_BLOCK.findall(chunk)]
    assert sorted(found) == ["set_sequence_id_for_sqlite", "set_sequence_id_for_sqlite_bulk"], sorted(found)
    return found


class Engine(object):
    """The bits of a DB-API connection the replay needs, per dialect."""

    def __init__(self, connection, paramstyle):
        self.connection = connection
        self.paramstyle = paramstyle

    def execute(self, sql, params=None):
        if self.paramstyle == "pyformat":
            # SQLAlchemy's text() binds :name; psycopg2 spells it %(name)s.
            sql = re.sub(r":(\w+)", r"%(\1)s", sql)
        cursor = self.connection.cursor()
        cursor.execute(sql, params or {})
        return cursor

    def scalar(self, sql, params=None):
        row = self.execute(sql, params).fetchone()
        return None if row is None else row[0]


def replay(engine, statements, batch):
    """What the listeners do for one flush of `batch` messages and one single insert.

    Bulk listener: create table, seed, reserve a range; single listener:
    create table, seed, take one value. Returns the sequence ids handed out.
    """
    bulk = statements["set_sequence_id_for_sqlite_bulk"]
    single = statements["set_sequence_id_for_sqlite"]
    ids = []
    engine.execute(bulk[0])
    engine.execute(bulk[1])
    start = engine.scalar(bulk[2], {"count": batch})
    assert start is not None, "UPDATE ... RETURNING gave nothing"
    for offset in range(batch):
        ids.append(start + offset)
    engine.execute(single[0])
    engine.execute(single[1])
    ids.append(engine.scalar(single[2]))
    for sequence_id in ids:
        engine.execute("INSERT INTO messages (id, sequence_id) VALUES (:id, :sid)",
                       {"id": "message-%d" % sequence_id, "sid": sequence_id})
    return ids


def check_replay(engine, original):
    patched = lmp.apply_patch(original)
    statements = listeners(patched)
    assert all("OR IGNORE" not in sql for blocks in statements.values() for sql in blocks)
    engine.execute(MESSAGES)
    for n in range(1, EXISTING + 1):
        engine.execute("INSERT INTO messages (id, sequence_id) VALUES (:id, :sid)", {"id": "old-%d" % n, "sid": n})
    # Twice: the first run seeds the table, the second must hit ON CONFLICT.
    first = replay(engine, statements, batch=3)
    second = replay(engine, statements, batch=2)
    assert first == [6, 7, 8, 9]
    assert second == [10, 11, 12]
    assert engine.execute("SELECT id, next_val FROM message_sequence").fetchall() == [(1, 13)]


def test_sqlite_accepts_the_upsert():
    version = tuple(int(p) for p in sqlite3.sqlite_version.split("."))
    assert version >= (3, 24, 0), "SQLite %s is older than 3.24, which the patched statement needs" % sqlite3.sqlite_version


def test_patched_listeners_run_on_sqlite(release):
    original = release.text
    connection = sqlite3.connect(":memory:")
    try:
        check_replay(Engine(connection, "named"), original)
    finally:
        connection.close()


def test_unpatched_statement_is_fine_on_sqlite(release):
    original = release.text
    connection = sqlite3.connect(":memory:")
    try:
        engine = Engine(connection, "named")
        statements = listeners(original)
        engine.execute(MESSAGES)
        engine.execute(statements["set_sequence_id_for_sqlite"][0])
        engine.execute(statements["set_sequence_id_for_sqlite"][1])
        engine.execute(statements["set_sequence_id_for_sqlite"][1])
        assert engine.execute("SELECT id, next_val FROM message_sequence").fetchall() == [(1, 1)]
    finally:
        connection.close()


@pytest.fixture
def pg(postgres, release):
    """A fresh database per release in the throwaway cluster."""
    name = "letta_" + release.version.replace(".", "_")
    admin = psycopg2.connect(**postgres)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("DROP DATABASE IF EXISTS %s" % name)
        cursor.execute("CREATE DATABASE %s" % name)
    connection = psycopg2.connect(**dict(postgres, dbname=name))
    connection.autocommit = True
    try:
        yield Engine(connection, "pyformat")
    finally:
        connection.close()
        with admin.cursor() as cursor:
            cursor.execute("DROP DATABASE %s" % name)
        admin.close()


def test_unpatched_statement_is_the_runbook_incident_on_postgresql(pg, release):
    original = release.text
    statements = listeners(original)["set_sequence_id_for_sqlite"]
    pg.execute(MESSAGES)
    pg.execute(statements[0])
    with pytest.raises(psycopg2.errors.SyntaxError) as failed:
        pg.execute(statements[1])
    assert 'syntax error at or near "OR"' in str(failed.value)


def test_patched_listeners_run_on_postgresql(pg, release):
    original = release.text
    check_replay(pg, original)
    server = pg.scalar("SHOW server_version")
    assert int(server.split(".")[0]) >= 13, server

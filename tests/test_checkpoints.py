"""telemetry.checkpoints: SQLite's write-ahead log copied back beside the writer, not in its commits.
(That the bridge runs it: tests/test_end_to_end.py.)"""
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from telemetry.checkpoints import WalCheckpointer, log_salts


@pytest.fixture
def writer(tmp_path):
    """A database in WAL mode whose writer never checkpoints by itself."""
    connection = sqlite3.connect(tmp_path / "hub.sqlite3", isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA wal_autocheckpoint=0")
    connection.execute("CREATE TABLE reading (id INTEGER PRIMARY KEY, value TEXT)")
    with closing(connection):
        yield connection


def write(connection, commits):
    for _ in range(commits):
        connection.execute("INSERT INTO reading (value) VALUES (?)", ["x" * 500])


def test_the_logs_salts_are_none_until_it_has_a_header(tmp_path):
    assert log_salts(tmp_path / "missing.sqlite3") is None


def test_once_the_log_is_copied_whole_the_next_commit_starts_it_over(writer, tmp_path):
    path = tmp_path / "hub.sqlite3"
    write(writer, 200)
    salts, size = log_salts(path), Path(f"{path}-wal").stat().st_size

    assert WalCheckpointer().checkpoint(path) is False  # nothing left to copy: no need to go again

    write(writer, 200)
    assert log_salts(path) != salts  # SQLite's mark of a log started over
    assert Path(f"{path}-wal").stat().st_size <= size * 1.1  # written over from its start, not grown


def test_a_readers_old_snapshot_holds_the_checkpointer_back_without_making_it_spin(writer, tmp_path):
    path = tmp_path / "hub.sqlite3"
    checkpointer = WalCheckpointer()
    write(writer, 100)
    salts = log_salts(path)
    with closing(sqlite3.connect(path, isolation_level=None)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM reading").fetchone()  # reads as of these 100 commits
        write(writer, 100)

        assert checkpointer.checkpoint(path) is True  # copied up to the reader's snapshot: more to do
        assert checkpointer.checkpoint(path) is False  # no further while the reader reads: wait
        reader.execute("COMMIT")
    assert checkpointer.checkpoint(path) is False  # the rest copied: the log is whole in the file
    assert log_salts(path) == salts  # not started over while a reader used it
    write(writer, 1)
    assert log_salts(path) != salts

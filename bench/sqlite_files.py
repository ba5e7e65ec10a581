"""The bytes an SQLite database takes on disk."""
from pathlib import Path


def sqlite_bytes(path):
    """The database file's size and its write-ahead log's: with a checkpoint every 20,000 pages
    (hub/settings.py) the log may hold up to 80 MiB that no checkpoint has copied into the file."""
    path = Path(path)
    return sum(file.stat().st_size for file in (path, path.with_name(f"{path.name}-wal")) if file.exists())

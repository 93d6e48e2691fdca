"""Store implementations behind :class:`regulator.ports.Store`.

- :class:`~regulator.storage.sqlite.SqliteStore`: the embedded default (one replica).
- :class:`~regulator.storage.redis.RedisStore`: shared by several replicas.
- :mod:`~regulator.storage.batch` and :mod:`~regulator.storage.spool`: the
  group-committing call writer and its local spool for when the store is down.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from regulator.ports import Store
    from regulator.settings import Settings

SQLITE_FILENAME = "regulator.sqlite3"


def open_store(settings: Settings) -> Store:
    """The store the settings ask for, not yet opened (call ``await store.open()``).

    Redis when ``redis_url`` is set (``redis://``, ``rediss://``, ``unix://`` or
    ``sentinel://host:26379,host2:26379/mymaster``), else SQLite in ``data_dir``.
    """
    url = settings.secret("redis_url")
    if url:
        from regulator.storage.redis import RedisStore

        return RedisStore(url, prefix=settings.redis_prefix)
    from regulator.storage.sqlite import SqliteStore

    return SqliteStore(settings.data_dir / SQLITE_FILENAME)


__all__ = ["SQLITE_FILENAME", "open_store"]

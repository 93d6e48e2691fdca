"""Store implementations behind :class:`regulator.ports.Store`.

- :class:`~regulator.storage.sqlite.SqliteStore`: the embedded default (one replica).
- :class:`~regulator.storage.redis.RedisStore`: shared by several replicas.
- :func:`outbox_store_for`: the outbox's store (:class:`regulator.ports.OutboxStore`)
  beside the main one, same SQLite file or same Redis.
- :mod:`~regulator.storage.batch` and :mod:`~regulator.storage.spool`: the
  group-committing call writer and its local spool for when the store is down.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from regulator.ports import OutboxStore, Store
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


def outbox_store_for(settings: Settings, redis_client: Redis | None = None) -> OutboxStore:
    """The outbox store beside the main store: Redis when ``redis_url`` is set (pass the
    main store's client for Sentinel/Cluster URLs), else its own tables in the main
    SQLite file (``data_dir/regulator.sqlite3``)."""
    from regulator.storage.outbox_redis import OutboxRedisStore

    if redis_client is not None:
        return OutboxRedisStore(redis_client, settings.redis_prefix)
    url = settings.secret("redis_url")
    if url:
        return OutboxRedisStore.from_url(url, settings.redis_prefix)
    from regulator.storage.outbox_sqlite import OutboxSqliteStore

    return OutboxSqliteStore(settings.data_dir / SQLITE_FILENAME)


__all__ = ["SQLITE_FILENAME", "open_store", "outbox_store_for"]

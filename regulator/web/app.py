"""The application factory and ``regulator serve``.

``create_app(settings, store, clock)`` builds everything from its arguments (no
module-level state) on the root app's keys; the routes, the three sub-apps and their
middlewares come from the route table (:mod:`regulator.web.routes`). Resources are
opened and closed in ``cleanup_ctx`` in a fixed order: store → call writer →
pending-callers index → protocol watcher → retention → no-show sweeper → (outbox) →
SSE bus.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Final

from aiohttp import web
from pydantic import ValidationError

from regulator.auth import TokenBook, TokenError
from regulator.bus import EventBus
from regulator.calls import CallRouter
from regulator.core.legs import LegChange
from regulator.core.protocol import ProtocolSet
from regulator.events import Events, ReferralChanged, legs_changed
from regulator.logs import configure_logging, get_logger
from regulator.metrics import Metrics, count_legs
from regulator.platforms import kamailio
from regulator.ports import Clock, Store, SystemClock
from regulator.reload import ProtocolRegistry, warm_up
from regulator.settings import Settings
from regulator.storage.batch import CallWriter
from regulator.storage.pending import PendingIndex, PendingSource
from regulator.storage.spool import Spool
from regulator.web import keys, routes
from regulator.web.console.quality import setup_live_quality
from regulator.web.interconnect import FEED, OutboxFeed, interconnect_ctx
from regulator.web.lifecycle import Lifecycle
from regulator.web.middlewares import errors, request_context, security_headers
from regulator.web.openapi import OPENAPI, build_openapi
from regulator.web.referrals import no_show_sweeper
from regulator.web.sessions import forget_removed_tokens
from regulator.web.sse import SSE_CLIENTS, subscribe_sse

log = get_logger("regulator.app")


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the store and start the group-commit writer; flush and close on shutdown."""
    store = app[keys.STORE]
    writer = app[keys.WRITER]
    lifecycle = app[keys.LIFECYCLE]
    try:
        await store.open()
        lifecycle.store_open = True
    except Exception as exc:  # serve anyway: calls are spooled and routed fail-safe
        app[keys.METRICS].storage_errors.labels(op="open").inc()
        log.error("store_open_failed", store=store.name, error=str(exc))
    await writer.start()
    yield
    lifecycle.shutting_down = True
    await writer.stop()
    with contextlib.suppress(Exception):
        await store.close()


async def _pending_ctx(app: web.Application) -> AsyncIterator[None]:
    """Keep the router's in-memory index of pending callers current from the store
    (storage/pending.py); until it is in sync, calls ask the store as before."""
    index = app[keys.ROUTER].pending_index
    store = app[keys.STORE]
    if index is None or not isinstance(store, PendingSource):
        yield
        return
    task = asyncio.create_task(store.follow_pending(index))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _protocols_ctx(app: web.Application) -> AsyncIterator[None]:
    """Reload protocols and the tokens file on SIGHUP and when a file changes; record
    each protocol version in force."""
    registry = app[keys.PROTOCOLS]
    settings = app[keys.SETTINGS]
    tokens = app[keys.TOKENS]
    loop = asyncio.get_running_loop()

    def on_hup() -> None:  # one handler per signal: it reloads both
        registry.reload()
        if tokens is not None:
            tokens.reload()

    hup = False
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGHUP, on_hup)
        hup = True
    tasks = [asyncio.create_task(registry.watch())] if settings.watch_protocols else []
    if tokens is not None:  # always watched: revoking a token must not wait for a SIGHUP
        tasks.append(asyncio.create_task(tokens.watch()))
        cleanups: set[asyncio.Task[None]] = set()

        def on_removed(names: frozenset[str]) -> None:  # their sessions are refused already
            task = asyncio.create_task(forget_removed_tokens(app, names))
            cleanups.add(task)
            task.add_done_callback(cleanups.discard)

        tokens.on_removed = on_removed
    if settings.runs_singletons:  # one record per version, not one per worker
        tasks.append(asyncio.create_task(registry.keep_history(app[keys.STORE])))
    yield
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if hup:
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(signal.SIGHUP)


def retention_cutoff(now: datetime, months: int) -> datetime:
    """The instant before which call records are purged: ``months`` calendar months ago."""
    year, month = divmod(now.year * 12 + now.month - 1 - months, 12)
    return now.replace(year=year, month=month + 1, day=1, hour=0, minute=0, second=0, microsecond=0)


async def _retention_ctx(app: web.Application) -> AsyncIterator[None]:
    """Purge call records (they hold phone numbers) past the retention period, daily."""
    settings = app[keys.SETTINGS]

    async def purge_daily() -> None:
        while True:
            try:
                before = retention_cutoff(app[keys.CLOCK].now(), settings.retention_months)
                purged = await app[keys.STORE].purge_calls(before)
                # After the calls: a version is kept as long as a call record names it.
                versions = await app[keys.STORE].purge_protocol_versions(
                    before, app[keys.PROTOCOLS].kept_versions()
                )
                log.info(
                    "retention_purge",
                    before=before.isoformat(),
                    purged=purged,
                    protocol_versions=versions,
                )
            except Exception as exc:  # retried tomorrow; never stops the service
                app[keys.METRICS].storage_errors.labels(op="purge").inc()
                log.warning("retention_purge_failed", error=str(exc))
            await asyncio.sleep(24 * 3600)

    task = asyncio.create_task(purge_daily())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


#: How often the export task looks for due files (a file is written within the hour).
EXPORT_CHECK_S = 3600.0


async def _exports_ctx(app: web.Application) -> AsyncIterator[None]:
    """Write the monthly reports and the annual export due (REGULATOR_EXPORT_DIR), hourly.

    Several replicas may write the same directory: each file is written through a
    rename and never rewritten, so they only repeat a little work.
    """
    directory = app[keys.SETTINGS].export_dir
    if directory is None:
        yield
        return

    async def write_hourly() -> None:
        from regulator.reporting import write_due_exports

        while True:
            try:
                written = await write_due_exports(
                    app[keys.STORE],
                    app[keys.PROTOCOLS].current,
                    directory,
                    app[keys.CLOCK].now(),
                    short_abandon_s=app[keys.SETTINGS].short_abandon_s,
                )
                for path in written:
                    log.info("export_written", path=str(path))
            except Exception as exc:  # retried within the hour; never stops the service
                app[keys.METRICS].storage_errors.labels(op="export").inc()
                log.warning("export_failed", error=str(exc))
            await asyncio.sleep(EXPORT_CHECK_S)

    task = asyncio.create_task(write_hourly())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


#: How often a worker copies its function-read gauges to the multiprocess files.
TRACKED_GAUGES_S = 1.0


async def _tracked_gauges_ctx(app: web.Application) -> AsyncIterator[None]:
    """Multiprocess metrics: refresh the gauges read from functions (Metrics.track)
    every second, so a scrape answered by another worker sees this one's values."""
    metrics = app[keys.METRICS]

    async def refresh_forever() -> None:
        while True:
            await asyncio.sleep(TRACKED_GAUGES_S)
            with contextlib.suppress(Exception):  # a metric never stops the service
                metrics.refresh()

    task = asyncio.create_task(refresh_forever())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _on_shutdown(app: web.Application) -> None:
    # Readiness turns false first so load balancers stop sending new work.
    app[keys.LIFECYCLE].shutting_down = True
    app[keys.BUS].close_all()


def create_app(
    settings: Settings,
    store: Store,
    clock: Clock | None = None,
    *,
    metrics: Metrics | None = None,
    protocols: ProtocolSet | None = None,
) -> web.Application:
    """Build the aiohttp application. ``protocols`` overrides loading from settings."""
    clock = clock or SystemClock()
    metrics = metrics or Metrics()
    app = web.Application(
        # The sub-apps add their own (auth, rate limit, error pages): routes.mount.
        middlewares=[request_context, security_headers, errors],
        client_max_size=settings.max_body_bytes,
    )
    registry = ProtocolRegistry(settings.protocols_dir, metrics, initial=protocols, clock=clock)
    if protocols is None:
        registry.reload()
    else:
        warm_up(protocols)
    # This process's own journals and spools (a worker's: data_dir/worker-<i>).
    settings.local_dir.mkdir(parents=True, exist_ok=True)
    spool = Spool(settings.local_dir / "spool.jsonl")
    events = Events()

    def on_legs(changes: Sequence[LegChange]) -> None:
        """The write path's leg changes: counted, then told to the live consoles."""
        try:
            count_legs(metrics, changes, settings.short_abandon_s)
        finally:
            for event in legs_changed(changes):
                events.publish(event)

    writer = CallWriter(
        store,
        spool,
        on_error=lambda op: metrics.storage_errors.labels(op=op).inc(),
        on_spool_change=metrics.spool_pending.set,
        # Write-ahead journal: an answered call survives a kill -9 of the process.
        journal=settings.local_dir / "journal",
        on_legs=on_legs,
    )
    tokens: TokenBook | None = None
    if settings.tokens_file is not None:
        try:
            tokens = TokenBook.load(settings.tokens_file)
        except TokenError as exc:
            raise SystemExit(f"erreur : fichier des jetons invalide : {exc}") from None
    router = CallRouter(
        protocols=registry,
        store=store,
        writer=writer,
        clock=clock,
        metrics=metrics,
        settings=settings,
        events=events,
        pending_index=PendingIndex() if isinstance(store, PendingSource) else None,
    )
    app[keys.SETTINGS] = settings
    app[keys.STORE] = store
    app[keys.CLOCK] = clock
    app[keys.METRICS] = metrics
    app[keys.PROTOCOLS] = registry
    app[keys.WRITER] = writer
    app[keys.ROUTER] = router
    app[keys.TOKENS] = tokens
    app[keys.LIFECYCLE] = Lifecycle()
    app[keys.BUS] = EventBus()
    app[keys.EVENTS] = events
    app[SSE_CLIENTS] = set()
    app[FEED] = OutboxFeed()
    app[OPENAPI] = build_openapi(routes.API)
    # Subscribers run in this order: metrics, live consoles, outbox.
    events.subscribe(ReferralChanged, _count_referral(metrics))
    subscribe_sse(events, app[keys.BUS])
    setup_live_quality(app)
    app[FEED].subscribe(events)
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_pending_ctx)
    app.cleanup_ctx.append(_protocols_ctx)
    # Once per service, not once per worker (serve --workers N: worker 0 only). They
    # would be safe on every worker (idempotent, optimistic versions, files written
    # through a rename) but would only repeat the same store scans N times.
    if settings.runs_singletons:
        app.cleanup_ctx.append(_retention_ctx)
        app.cleanup_ctx.append(no_show_sweeper)
    # Every worker: its own outbox journal and spool; deliveries are leased in the
    # outbox store, so several workers (like several replicas) never send one twice.
    app.cleanup_ctx.append(interconnect_ctx)
    if settings.runs_singletons:
        app.cleanup_ctx.append(_exports_ctx)
    if metrics.multiprocess_dir is not None:
        app.cleanup_ctx.append(_tracked_gauges_ctx)
    app.on_shutdown.append(_on_shutdown)
    routes.mount(app)
    return app


def _count_referral(metrics: Metrics) -> Callable[[ReferralChanged], None]:
    """The metrics subscriber: ``regulator_referrals_total{mmg,event}``."""

    def count(event: ReferralChanged) -> None:
        metrics.referrals.labels(mmg=event.referral.mmg, event=event.event).inc()

    return count


#: The cyclic GC's young-generation threshold while serving (see serve): every 10,000
#: net allocations instead of CPython 3.11's 700 (measured on 3.11; 3.13's incremental
#: collector reads its thresholds differently). The older generations keep theirs.
GC_YOUNG_THRESHOLD: Final = 10_000


def serve(args: argparse.Namespace) -> int:
    """``regulator serve``: settings from env/TOML, overridden by command-line options."""
    overrides: dict[str, object] = {}
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides["port"] = args.port
    if getattr(args, "protocols", None):
        overrides["protocols_dir"] = args.protocols
    if getattr(args, "workers", None) is not None:
        overrides["workers"] = args.workers
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:  # which setting, which value, why: no traceback
        first = exc.errors(include_url=False)[0]
        name = "REGULATOR_" + "_".join(str(p) for p in first["loc"]).upper()
        if name == "REGULATOR_WORKERS" and "workers" in overrides:
            name = "--workers"
        why = str(first["msg"]).removeprefix("Value error, ")
        raise SystemExit(f"erreur : réglage {name} invalide : {why}") from None
    configure_logging(settings.log_format, settings.log_level, worker=settings.worker_index)
    from regulator.web import workers

    if settings.worker_index is None:
        if settings.workers > 1:
            return workers.supervise(settings)
        # One process after a run with several: their journals and spools come here.
        workers.adopt_orphans(settings.data_dir, None)
    else:
        workers.die_with_parent()
    # Even at DEBUG: aiosqlite logs every statement with its parameters (phone numbers).
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    from regulator.storage import open_store

    store = open_store(settings)
    app = create_app(settings, store, SystemClock())
    _warn_unreachable_over_kamailio(settings, app[keys.PROTOCOLS].current)
    log.info(
        "serving",
        host=settings.host,
        port=settings.port,
        store=store.name,
        mmgs=sorted(app[keys.PROTOCOLS].current.by_id),
        insecure_dev=settings.insecure_dev,
    )
    # Everything built so far (modules, protocols, calendars) lives as long as the
    # process: keep it out of the cyclic GC's full collections, whose pauses would
    # otherwise land on webhooks (see benchmarks/README.md).
    gc.collect()
    gc.freeze()
    # A webhook leaves some twenty container objects behind (caches, the console
    # history, the writer's batch): at 3.11's default threshold of 700 the young
    # generation was collected every ~30 webhooks, and the cyclic GC took 27 µs a
    # webhook at saturation (gc.callbacks timing), 7 % of its CPU. At 10,000 it takes
    # 6 µs, each young collection pausing ~3 ms (benchmarks/README.md, "GC").
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        asyncio.run(_run(app, settings))
    else:
        uvloop.run(_run(app, settings))
    return 0


def _warn_unreachable_over_kamailio(settings: Settings, protocols: ProtocolSet) -> None:
    """With a Kamailio secret set, log each destination Kamailio cannot ring (neither a
    SIP URI nor REGULATOR_SIP_GATEWAY): its calls go on to the next route."""
    if not settings.secret("kamailio_secret"):
        return
    for proto in protocols:
        for name in kamailio.unreachable_destinations(proto, settings.sip_gateway):
            log.warning(
                "kamailio_destination_unreachable",
                mmg=proto.id,
                destination=name,
                reason="no SIP URI and no REGULATOR_SIP_GATEWAY",
            )


async def _run(app: web.Application, settings: Settings) -> None:
    # Our handlers before anything starts: a SIGTERM that lands while the store,
    # journals and threads are being opened (runner.setup) must still run the cleanup,
    # or the store's worker threads keep a half-started process alive for ever.
    stop = asyncio.Event()
    received: list[signal.Signals] = []
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal, sig)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=10.0)
    try:
        # Start-up may wait on the store (a Redis that accepts and never answers): a
        # signal interrupts it too.
        setup = asyncio.create_task(runner.setup())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({setup, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not setup.done():
            setup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await setup
        else:
            setup.result()  # a start-up error is raised here, after the cleanup below
        if not stop.is_set():
            # Workers share the port: the kernel spreads connections over them.
            site = web.TCPSite(
                runner,
                settings.host,
                settings.port,
                reuse_address=True,
                reuse_port=settings.worker_index is not None,
            )
            await site.start()
            await stop.wait()
    finally:
        # Readiness turns false first, then (SIGTERM) a grace period while the load
        # balancer notices; then the listener closes, in-flight requests are answered,
        # SSE streams end (on_shutdown), and the call writer flushes to the store or
        # the fsync'd spool (cleanup_ctx).
        app[keys.LIFECYCLE].shutting_down = True
        grace = settings.shutdown_grace_s if signal.SIGTERM in received else 0.0
        log.info("shutting_down", grace_s=grace)
        if grace > 0:
            await asyncio.sleep(grace)
        await runner.cleanup()
        log.info("stopped")

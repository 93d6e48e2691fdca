"""``regulator serve --workers N``: one supervisor, N worker processes on one port.

Each worker is a plain ``regulator serve`` started with ``REGULATOR_WORKER_INDEX=i``
in its environment: it listens with ``SO_REUSEPORT`` on the same host and port (the
kernel spreads connections over the workers), keeps its journals and spools in
``data_dir/worker-<i>/`` and shares the store (Redis, or the one SQLite file in WAL
mode) with the others. The supervisor itself serves nothing:

- before starting the workers it hands what a previous run left in directories no
  worker will own (``worker-<j>`` with ``j >= N``, or the single process's files in
  ``data_dir`` itself) to worker 0's spool, so shrinking N or switching modes loses
  nothing; a worker restarted with the same index recovers its own directory;
- SIGHUP is passed to every worker (protocols and tokens reload); SIGTERM and SIGINT
  too, then it waits for every worker's graceful stop (the writer flushes to the
  store or the fsync'd spool) and exits 0;
- a worker that dies unexpectedly is logged and restarted, with a backoff doubling
  from 0.5 s to 30 s (reset once a worker has lived a minute); a worker that fails in
  its first seconds with an exit status (a configuration error) stops the service;
- ``PROMETHEUS_MULTIPROC_DIR`` is ``data_dir/prometheus`` (emptied at start), so a
  scrape of the port, whichever worker answers, returns the sum over every worker.

Background tasks that are once per service (retention purge, monthly exports, the
no-show sweeper, the protocol version history) run in worker 0 only
(:attr:`Settings.runs_singletons`); the outbox delivery runs in every worker (its
deliveries are leased in the outbox store, as between replicas).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import sys
from collections.abc import Iterable
from pathlib import Path

from regulator.logs import get_logger
from regulator.metrics import MULTIPROC_ENV
from regulator.settings import Settings
from regulator.storage.spool import open_private

log = get_logger("regulator.workers")

#: Environment variable that makes a ``regulator serve`` a worker (its index).
WORKER_ENV = "REGULATOR_WORKER_INDEX"
#: The local files of a process, as :mod:`regulator.storage.batch` and
#: :mod:`regulator.interconnect.feed` name them: (journal prefix, spool file).
LOCAL_FILES = (("journal", "spool.jsonl"), ("outbox-journal", "outbox-spool.jsonl"))
#: A first start that ends with an exit status this soon is a configuration error.
STARTUP_S = 30.0
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
#: A worker that lived this long restarts after the initial backoff again.
BACKOFF_RESET_S = 60.0
#: Extra time given to the workers' graceful stop before they are killed.
STOP_TIMEOUT_S = 30.0


def worker_dir(data_dir: Path, index: int) -> Path:
    """Worker ``index``'s own directory (journals, spools)."""
    return data_dir / f"worker-{index}"


def _worker_dirs(data_dir: Path) -> list[tuple[int, Path]]:
    found = []
    with contextlib.suppress(FileNotFoundError):
        for path in data_dir.iterdir():
            suffix = path.name.removeprefix("worker-")
            if path.is_dir() and suffix != path.name and suffix.isdigit():
                found.append((int(suffix), path))
    return sorted(found)


def _segments(directory: Path, prefix: str) -> list[Path]:
    found = []
    for path in directory.glob(prefix + ".*"):
        suffix = path.name[len(prefix) + 1 :]
        if suffix.isdigit():
            found.append((int(suffix), path))
    return [p for _, p in sorted(found)]


def _append_lines(source: Path, target: Path) -> int:
    """Append ``source``'s complete lines to ``target`` (fsync'd); return the count.
    A torn last line (a crash mid-write) goes to ``target``'s ``.rejected`` file."""
    data = source.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        rejected = target.with_name(target.name + ".rejected")
        fd = open_private(rejected, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        with os.fdopen(fd, "ab") as fh:
            fh.write(data[end:] + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        log.error("spool_rejected", path=str(rejected), lines=1, reason="torn last line")
    if end:
        fd = open_private(target, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        try:
            # A line this file's own writer left torn must not glue itself to ours.
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                os.write(fd, b"\n")
            view = memoryview(data[:end])
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    return data.count(b"\n", 0, end)


def adopt(source: Path, target: Path) -> int:
    """Move the journals and spools ``source`` holds (a process that is not running)
    to the spools of ``target``, oldest first: the journal lines are the newest items,
    the same one-line encoding as the spool's, so they go after the spool's. The
    owner of ``target`` replays them at start; the store's writes are idempotent.
    Returns how many lines moved."""
    moved = 0
    target.mkdir(parents=True, exist_ok=True)
    for prefix, spool_name in LOCAL_FILES:
        parts = [source / spool_name, *_segments(source, prefix)]
        for part in parts:
            if not part.exists():
                continue
            moved += _append_lines(part, target / spool_name)
            part.unlink()
    if moved:
        log.warning("local_files_adopted", source=str(source), target=str(target), items=moved)
    if source != target and source.name.startswith("worker-"):
        with contextlib.suppress(OSError):  # not empty (a .rejected file): kept
            source.rmdir()
    return moved


def adopt_orphans(data_dir: Path, workers: int | None) -> int:
    """Hand every directory no process of this run owns to the first one: ``workers``
    None (one process, files in ``data_dir``) adopts every ``worker-<j>``; N workers
    adopt ``data_dir``'s own files and every ``worker-<j>`` with ``j >= N`` into
    ``worker-0``. Run while no process of the service is running."""
    if workers is None:
        target = data_dir
        sources: Iterable[Path] = [path for _, path in _worker_dirs(data_dir)]
    else:
        target = worker_dir(data_dir, 0)
        sources = [data_dir, *(path for index, path in _worker_dirs(data_dir) if index >= workers)]
    moved = 0
    for source in sources:
        moved += adopt(source, target)
    return moved


def die_with_parent() -> None:
    """In a worker: have the kernel send SIGTERM if the supervisor dies (``kill -9``),
    so no worker is left holding the port; exit now if it is already gone."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    if os.getppid() == 1:
        raise SystemExit(0)


def _prepare_metrics_dir(data_dir: Path) -> Path:
    """``data_dir/prometheus``, emptied: the previous run's values are not this run's."""
    path = data_dir / "prometheus"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _mark_dead(pid: int, directory: Path) -> None:
    """Drop a dead worker's live gauges (its counters stay in the sums)."""
    from prometheus_client import multiprocess

    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


async def _init_sqlite(settings: Settings) -> None:
    """Create the SQLite schema and turn WAL on once, before N workers open the file
    at the same time (each then only finds it ready)."""
    from regulator.storage import open_store

    store = open_store(settings)
    if store.name != "sqlite":
        return
    try:
        await store.open()
    except Exception as exc:  # the workers serve anyway (spool, fail-safe)
        log.error("store_open_failed", store=store.name, error=str(exc))
        return
    await store.close()


class Supervisor:
    """The N workers of one ``serve``: started, signalled, restarted, waited for."""

    def __init__(self, settings: Settings, metrics_dir: Path) -> None:
        self.settings = settings
        self.count = settings.workers
        self.metrics_dir = metrics_dir
        self.processes: dict[int, asyncio.subprocess.Process] = {}
        self.stopping: signal.Signals | None = None
        self.stopped = asyncio.Event()
        self.failure: int | None = None

    def environment(self, index: int) -> dict[str, str]:
        """The worker's environment: ours, with the resolved command-line options."""
        env = dict(os.environ)
        env.update(
            {
                WORKER_ENV: str(index),
                "REGULATOR_WORKERS": str(self.count),
                "REGULATOR_HOST": self.settings.host,
                "REGULATOR_PORT": str(self.settings.port),
                "REGULATOR_PROTOCOLS_DIR": str(self.settings.protocols_dir),
                "REGULATOR_DATA_DIR": str(self.settings.data_dir),
                MULTIPROC_ENV: str(self.metrics_dir),
            }
        )
        return env

    def signal_all(self, sig: signal.Signals) -> None:
        for process in list(self.processes.values()):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)

    def on_stop(self, sig: signal.Signals) -> None:
        if self.stopping is None:
            self.stopping = sig
            log.info("workers_stopping", signal=sig.name, workers=len(self.processes))
            self.stopped.set()
        self.signal_all(sig)

    def on_hup(self) -> None:
        log.info("workers_reload", workers=len(self.processes))
        self.signal_all(signal.SIGHUP)

    async def keep(self, index: int) -> None:
        """Run worker ``index`` until the service stops, restarting it when it dies."""
        loop = asyncio.get_running_loop()
        backoff = BACKOFF_INITIAL_S
        first = True
        while self.stopping is None:
            started = loop.time()
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "regulator",
                "serve",
                stdin=asyncio.subprocess.DEVNULL,
                env=self.environment(index),
            )
            self.processes[index] = process
            if self.stopping is not None:  # the signal came while it was being started
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(self.stopping)
            log.info("worker_started", worker=index, pid=process.pid, restart=not first)
            code = await process.wait()
            del self.processes[index]
            _mark_dead(process.pid, self.metrics_dir)
            if self.stopping is not None:
                log.info("worker_stopped", worker=index, pid=process.pid, exit_code=code)
                return
            lived = loop.time() - started
            if first and code > 0 and lived < STARTUP_S:
                log.error("worker_failed_at_start", worker=index, pid=process.pid, exit_code=code)
                self.failure = code
                self.on_stop(signal.SIGTERM)
                return
            first = False
            if lived >= BACKOFF_RESET_S:
                backoff = BACKOFF_INITIAL_S
            log.error(
                "worker_died",
                worker=index,
                pid=process.pid,
                exit_code=code,  # negative: killed by that signal
                restart_in_s=backoff,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopped.wait(), backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.on_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self.on_hup)
        tasks = [asyncio.create_task(self.keep(index)) for index in range(self.count)]
        await self.stopped.wait()
        timeout = self.settings.shutdown_grace_s + STOP_TIMEOUT_S
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        if pending:  # a worker stuck in its stop: no longer our problem to wait for
            log.error("workers_killed", workers=len(self.processes))
            self.signal_all(signal.SIGKILL)
            await asyncio.wait(pending, timeout=5.0)
        for task in done:
            task.result()
        log.info("stopped")
        return self.failure or 0


def supervise(settings: Settings) -> int:
    """Run ``settings.workers`` workers until SIGTERM/SIGINT; the exit status."""
    if settings.port == 0:
        raise SystemExit(
            "erreur : --workers demande un port fixe (REGULATOR_PORT=0 donnerait à chaque "
            "processus un port différent)"
        )
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    adopt_orphans(data_dir, settings.workers)
    metrics_dir = _prepare_metrics_dir(data_dir)
    log.info(
        "supervising",
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
        pid=os.getpid(),
    )

    async def main() -> int:
        await _init_sqlite(settings)
        return await Supervisor(settings, metrics_dir).run()

    return asyncio.run(main())

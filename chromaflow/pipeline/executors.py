"""Where the shots of a run are coloured: in this process, a local process pool, or a Ray cluster.

A run is cut into :class:`ShotTask` s, one per shot of its plan.  A task is
plain data (the input path, the resolved configuration, the plan, the shot's
index, the segment path), so it can be pickled to a process or a machine;
:func:`run_shot` opens the input there, seeks to the shot, colours it with the
engine and writes it as a lossless segment into the work folder (shared
storage when the workers are other machines).  The driver records finished
segments in the manifest and muxes the output from them.

* :class:`InProcessExecutor` (default): one shot after the other, here.
* :class:`PoolExecutor`: ``workers`` local processes (``spawn``), each loading
  the models once.
* :class:`RayExecutor`: Ray tasks (``pip install chromaflow[ray]``), on a
  local Ray instance or the cluster at ``address``; a task whose worker dies
  is retried (``max_retries``).

Every shot gives the same frames wherever it runs (the engine's shots are
independent given the plan), so all executors write identical outputs.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from chromaflow.errors import ChromaflowError, InputError, NotAvailableError, WorkerError
from chromaflow.pipeline.options import ColorizeOptions
from chromaflow.pipeline.propagate import Carry
from chromaflow.pipeline.work import Segment, SegmentWriter

log = logging.getLogger("chromaflow")

EXECUTORS = ("inprocess", "pool", "ray")


@dataclass(frozen=True)
class ShotTask:
    """One shot to colour, as plain data.

    Attributes:
        input: the input's path.
        fps: frame rate of a frame directory (``None``: the source's own).
        options: the resolved run configuration (the palette already resolved to colours).
        plan: the plan, as :meth:`Plan.to_dict <chromaflow.pipeline.plan.Plan.to_dict>`.
        shot: the shot's index in the plan.
        segment: where its segment goes.
        masks: folder of ``--save-masks`` (``None``: none).
        palette: the palette the driver resolved (a :class:`~chromaflow.guidance.palette.Palette`), or ``None``.
        carry_from: the carry file of the previous window, when this shot continues a long shot.
        carry_to: where to write this shot's last frame, when the next shot continues it.
    """

    input: str
    fps: float | None
    options: ColorizeOptions
    plan: dict
    shot: int
    segment: str
    masks: str | None = None
    palette: object = None
    carry_from: str | None = None
    carry_to: str | None = None


_COMPONENTS: dict = {}


def _components(options: ColorizeOptions):
    """The components of a worker process for ``options.runtime`` (a pool's or Ray's worker colours many
    shots: its models load once)."""
    from chromaflow.registry import Components
    from chromaflow.runtime import Runtime

    key = options.runtime
    if key not in _COMPONENTS:
        _COMPONENTS[key] = Components(Runtime(options.runtime))
    return _COMPONENTS[key]


def run_shot(task: ShotTask, on_frame: Callable[[], None] | None = None, components=None) -> Segment:
    """Colour one shot of ``task`` and write its segment (runs wherever the executor puts it).

    Raises:
        ChromaflowError: bad input or options (not retried).
    """
    from chromaflow.io.inspection import GroundingWriter
    from chromaflow.io.source import open_source
    from chromaflow.pipeline.colorize import build_conditions, build_engine
    from chromaflow.pipeline.plan import Plan

    plan = Plan.from_dict(task.plan)
    components = components or _components(task.options)
    with open_source(task.input, fps=task.fps) as source:
        conditions = build_conditions(task.options, source, report=False, palette=task.palette)
        writer = GroundingWriter(Path(task.masks)) if task.masks else None
        engine = build_engine(task.options, conditions, components, writer, report=False)
        carry = load_carry(Path(task.carry_from)) if task.carry_from else None
        out = SegmentWriter(Path(task.segment), source.info.width, source.info.height)
        try:
            for frame, rgb in engine.run(source, conditions, plan=plan, shots=[task.shot], carry=carry):
                out.write(rgb, frame.pts)
                if on_frame is not None:
                    on_frame()
            if task.carry_to:
                if engine.carry is None:
                    raise InputError(f"shot {task.shot + 1}: the input ended before the next window's first frame")
                save_carry(Path(task.carry_to), engine.carry)
            expected = plan.shots[task.shot]
            if len(out.pts) != len(expected):  # a damaged stretch of the input: never record a short shot
                raise InputError(f"shot {task.shot + 1} (frames {expected.start}-{expected.stop - 1}): decoded "
                                 f"{len(out.pts)} of its {len(expected)} frames")
            return out.close(task.shot)
        except BaseException:
            out.abort()
            raise


def save_carry(path: Path, carry: Carry) -> None:
    """Write a window's last frame (atomically) for the next window of the long shot."""
    import numpy as np

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    origin = {} if carry.origin is None else dict(zip(("origin_gray", "origin_ab", "origin_conf"), carry.origin))
    with open(tmp, "wb") as fh:
        np.savez(fh, index=np.int64(carry.index), ab=carry.ab, conf=carry.conf, **origin)
    os.replace(tmp, path)


def load_carry(path: Path) -> Carry:
    """Read what :func:`save_carry` wrote."""
    import numpy as np

    with np.load(path) as data:
        origin = None
        if "origin_gray" in data.files:
            origin = (data["origin_gray"], data["origin_ab"], data["origin_conf"])
        return Carry(int(data["index"]), data["ab"], data["conf"], origin)


class Executor(ABC):
    """Runs shot tasks; calls ``on_done(segment)`` in the driver as each finishes (any order)."""

    name = "executor"

    @abstractmethod
    def run(self, tasks: Sequence[ShotTask], on_done: Callable[[Segment], None],
            on_frame: Callable[[], None] | None = None) -> None:
        """Run every task.

        Raises:
            ChromaflowError: a task failed on bad input or options.
            RuntimeError: a task failed otherwise (one line).
            KeyboardInterrupt: interrupted; finished segments were passed to ``on_done``.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release workers."""


class InProcessExecutor(Executor):
    """Shot after shot in this process (components built once, reused across shots and runs).

    Args:
        components: the :class:`~chromaflow.registry.Components` to reuse (a server's), or ``None``.
    """

    name = "inprocess"

    def __init__(self, components=None) -> None:
        self.components = components

    def run(self, tasks, on_done, on_frame=None):
        from chromaflow.registry import Components
        from chromaflow.runtime import Runtime

        for task in tasks:
            if self.components is None:  # one set per run: models load once, not once per shot
                self.components = Components(Runtime(task.options.runtime))
            on_done(run_shot(task, on_frame, self.components))


def _init_worker(level: int) -> None:
    logging.getLogger("chromaflow").setLevel(max(level, logging.WARNING))


class PoolExecutor(Executor):
    """``workers`` local processes (spawned; each loads the models once).

    Args:
        workers: processes (default: the CPU count).
    """

    name = "pool"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1

    def run(self, tasks, on_done, on_frame=None):
        import concurrent.futures as cf
        import multiprocessing as mp
        from concurrent.futures.process import BrokenProcessPool

        level = logging.getLogger("chromaflow").getEffectiveLevel()
        pool = cf.ProcessPoolExecutor(max_workers=min(self.workers, max(1, len(tasks))),
                                      mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                      initargs=(level,))
        futures = [pool.submit(run_shot, t) for t in tasks]
        try:
            for future in cf.as_completed(futures):
                try:
                    on_done(future.result())
                except BrokenProcessPool:
                    raise WorkerError("a worker process died (killed, or out of memory); "
                                      "run the same command again to resume") from None
        except BaseException:
            for f in futures:
                f.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            for p in list(getattr(pool, "_processes", {}).values()):  # stop the shots in progress too
                p.terminate()
            raise
        pool.shutdown()


class RayExecutor(Executor):
    """Shots as Ray tasks, on a local Ray instance or the cluster at ``address``.

    Args:
        address: a Ray cluster (``ray://HOST:10001`` or ``HOST:6379``; ``auto``: the
            one this machine belongs to); ``None`` starts a local instance.
        workers: CPUs of a local instance (default: all).
        max_retries: times a task whose worker died is run again.
        cpus_per_task: CPUs Ray reserves for each shot.
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, max_retries: int = 3,
                 cpus_per_task: float = 1.0) -> None:
        try:
            import ray
        except ImportError:
            raise NotAvailableError("--executor ray needs Ray: pip install 'chromaflow[ray]'") from None
        self._ray = ray
        self._started = False
        if address and not ray.is_initialized():
            _check_reachable(address)
        if not ray.is_initialized():
            kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                          configure_logging=False)
            try:
                if address:
                    ray.init(address=address, **kwargs)
                else:
                    ray.init(num_cpus=workers or os.cpu_count(), **kwargs)
            except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise InputError(f"cannot reach the Ray cluster at {address or 'local'}: {msg}") from None
            self._started = True
        self._remote = ray.remote(max_retries=max_retries, retry_exceptions=False,
                                  num_cpus=cpus_per_task)(_ray_shot)

    def run(self, tasks, on_done, on_frame=None):
        ray = self._ray
        pending = {self._remote.remote(t): t for t in tasks}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    pending.pop(ref)
                    try:
                        status, payload = ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                        raise WorkerError(f"a Ray task failed: {first}") from None
                    if status == "error":
                        kind, message = payload
                        raise (NotAvailableError if kind == "NotAvailableError" else InputError)(message)
                    on_done(payload)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """One line instead of Ray's long wait when ``HOST:PORT`` (or ``ray://HOST:PORT``) does not answer."""
    import socket

    text = address.split("://", 1)[-1]
    if text == "auto" or ":" not in text:
        return
    host, _, port = text.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return
    except ValueError:
        raise InputError(f"--ray {address}: expected HOST:PORT, ray://HOST:PORT or auto") from None
    except OSError as exc:
        raise InputError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc} "
                         "(start it with 'ray start --head' there)") from None


def _ray_shot(task: ShotTask):
    """A Ray task: ``("ok", segment)``, or ``("error", message)`` for a user error (not retried)."""
    try:
        return "ok", run_shot(task)
    except ChromaflowError as exc:
        return "error", (type(exc).__name__, str(exc))


def check_executor(name: str, address: str | None = None) -> None:
    """Refuse, before any work, an executor that cannot run: an unknown name, Ray missing, a cluster
    that does not answer (one line)."""
    import importlib.util

    if name not in EXECUTORS:
        raise InputError(f"unknown executor {name!r}; use one of {', '.join(EXECUTORS)}")
    if address and name not in ("ray", "inprocess"):
        raise InputError("--ray ADDRESS goes with --executor ray")
    if name == "ray" or address:
        if importlib.util.find_spec("ray") is None:
            raise NotAvailableError("--executor ray needs Ray: pip install 'chromaflow[ray]'")
        if address:
            _check_reachable(address)


def make_executor(name: str = "inprocess", workers: int | None = None, address: str | None = None,
                  components=None) -> Executor:
    """The executor ``name`` (see the module doc).

    Raises:
        InputError: an unknown name, or a Ray cluster that does not answer.
        NotAvailableError: Ray is not installed.
    """
    if address and name not in ("ray", "inprocess"):
        raise InputError("--ray ADDRESS goes with --executor ray")
    if address:
        name = "ray"
    if name == "inprocess":
        return InProcessExecutor(components)
    if name == "pool":
        return PoolExecutor(workers)
    if name == "ray":
        return RayExecutor(address, workers)
    raise InputError(f"unknown executor {name!r}; use one of {', '.join(EXECUTORS)}")

"""The work folder of a run: finished shots as lossless segments, a manifest, a lock.

A run writes each finished shot as a lossless segment (RGB H.264, ``libx264rgb``
at CRF 0, in Matroska) into its work folder, and records it in
``manifest.json`` (atomically, after the segment is complete and renamed into
place) with its frame count, timestamps, size and sha256.  The same description
is written beside the segment (``shot_NNNNN.json``) before the segment takes its
name, so a run killed between the rename and the manifest's update loses no
shot: the resume adopts a segment its description vouches for.  The manifest also
holds the plan, the hash of the configuration that shapes the colours and a
fingerprint of the input, so re-running the same command after a crash reuses
every finished segment; another configuration, another input or a manifest of
another version starts afresh, and the log says why.  A segment whose size or
checksum no longer matches (truncated, damaged) is redone.

The folder is locked (``flock``) while a run uses it: a second run on the same
output refuses with one line.  The lock goes with the process, so a killed
run leaves no stale lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from chromaflow.errors import OutputError
from chromaflow.pipeline.plan import Plan
from chromaflow.store.store import sha256_of

log = logging.getLogger("chromaflow")

#: Version of the manifest layout; a work folder of another version is started afresh.
WORK_VERSION = 1
_MANIFEST = "manifest.json"
_LOCK = "lock"
_SAMPLE = 1 << 20


def default_work_dir(output: Path, parent: Path | None = None) -> Path:
    """The work folder of ``output``: ``.NAME.chromaflow-work`` beside it, or inside ``parent``
    (``--work-dir``; a folder of chromaflow's own there, so nothing else in it is touched)."""
    name = f".{output.name}.chromaflow-work"
    return Path(parent) / name if parent is not None else output.with_name(name)


def input_fingerprint(path: Path) -> dict:
    """What identifies an input: its resolved path, size, modification time and the sha256 of its first
    and last MiB (a folder of frames: the names, sizes and times of its files)."""
    path = Path(path).resolve()
    if path.is_dir():
        h = hashlib.sha256()
        for p in sorted(path.iterdir()):
            if p.is_file():
                st = p.stat()
                h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return {"path": str(path), "files": h.hexdigest()}
    st = path.stat()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        h.update(fh.read(_SAMPLE))
        if st.st_size > _SAMPLE:
            fh.seek(max(_SAMPLE, st.st_size - _SAMPLE))
            h.update(fh.read(_SAMPLE))
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sample": h.hexdigest()}


@dataclass(frozen=True)
class Segment:
    """A finished shot in the work folder.

    Attributes:
        shot: the shot's index in the plan.
        file: the segment's file name in the work folder.
        frames: frames it holds (the shot's, in order).
        pts: each frame's timestamp in the source's time base.
        size, sha256: of the file, to detect a truncated or damaged segment.
    """

    shot: int
    file: str
    frames: int
    pts: tuple[int, ...]
    size: int
    sha256: str

    def to_dict(self) -> dict:
        """The manifest's entry (the shot is its key)."""
        return {"file": self.file, "frames": self.frames, "pts": list(self.pts), "size": self.size,
                "sha256": self.sha256}

    @classmethod
    def from_dict(cls, shot: int, raw: dict) -> Segment:
        """Inverse of :meth:`to_dict`; ``KeyError``, ``TypeError`` or ``ValueError`` on a damaged entry."""
        return cls(shot, str(raw["file"]), int(raw["frames"]), tuple(int(p) for p in raw["pts"]), int(raw["size"]),
                   str(raw["sha256"]))

    def intact(self, folder: Path) -> bool:
        """Whether the file in ``folder`` still has the recorded size and sha256."""
        path = folder / self.file
        return path.is_file() and path.stat().st_size == self.size and sha256_of(path) == self.sha256


def description_path(segment: Path) -> Path:
    """Where a segment's own description (:meth:`Segment.to_dict`) lies: ``shot_NNNNN.json`` beside it."""
    return segment.with_suffix(".json")


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary name (``OSError`` on failure, no temporary left)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


class SegmentWriter:
    """Writes one shot's RGB frames losslessly to ``path`` (atomically: a temporary name until :meth:`close`)."""

    def __init__(self, path: Path, width: int, height: int) -> None:
        self.path = path
        self._tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self.pts: list[int] = []
        with self._errors():
            self._out = av.open(str(self._tmp), mode="w", format="matroska")
            stream = self._out.add_stream("libx264rgb", rate=25)
            stream.width, stream.height, stream.pix_fmt = width, height, "rgb24"
            stream.options = {"crf": "0", "preset": "ultrafast"}
            self._stream = stream

    def _errors(self):
        """A disk that fills up or a folder that goes away: one line, the finished segments kept."""
        import contextlib

        @contextlib.contextmanager
        def guard():
            try:
                yield
            except (OSError, av.error.FFmpegError) as exc:
                self.abort()
                why = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
                raise OutputError(f"cannot write the work folder {self.path.parent}: {why} "
                                  "(finished shots are kept: free space and run the same command again)") from None

        return guard()

    def write(self, rgb: np.ndarray, pts: int) -> None:
        with self._errors():
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = len(self.pts)
            for packet in self._stream.encode(frame):
                self._out.mux(packet)
        self.pts.append(int(pts))

    def close(self, shot: int) -> Segment:
        """Finish the file, move it into place and describe it."""
        with self._errors():
            for packet in self._stream.encode(None):
                self._out.mux(packet)
            self._out.close()
            with open(self._tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            segment = Segment(shot, self.path.name, len(self.pts), tuple(self.pts), self._tmp.stat().st_size,
                              sha256_of(self._tmp))
            _write_atomic(description_path(self.path), json.dumps(segment.to_dict()))
            os.replace(self._tmp, self.path)
        return segment

    def abort(self) -> None:
        try:
            if hasattr(self, "_out"):
                self._out.close()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        self._tmp.unlink(missing_ok=True)


def read_segment(path: Path) -> Iterator[np.ndarray]:
    """The ``(H, W, 3)`` ``uint8`` RGB frames of a segment, in order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame threads: the mux decodes while it encodes the output
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24")


class WorkDir:
    """The work folder of one output (see the module doc).

    Args:
        path: the folder (created if missing).

    Raises:
        OutputError: it cannot be created or written, or another run holds it.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".probe.{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise OutputError(f"cannot use the work folder {self.path}: {exc.strerror or exc}") from None
        try:
            self._lock_fh = open(self.path / _LOCK, "a+")
        except OSError as exc:
            raise OutputError(f"cannot use the work folder {self.path}: {exc.strerror or exc}") from None
        try:
            import fcntl

            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_fh.seek(0)
            other = self._lock_fh.read().strip() or "?"
            self._lock_fh.close()
            raise OutputError(f"another chromaflow run (pid {other}) is writing this output (work folder "
                              f"{self.path}); wait for it to finish or choose another output") from None
        except ImportError:  # pragma: no cover - not POSIX: no lock
            pass
        self._lock_fh.seek(0)
        self._lock_fh.truncate()
        self._lock_fh.write(str(os.getpid()))
        self._lock_fh.flush()
        self._clean_stale()
        self.manifest: dict = {}

    def _clean_stale(self) -> None:
        """Remove half-written segments of a killed run (their writer is gone: we hold the lock)."""
        for p in self.path.glob(".*.tmp"):
            p.unlink(missing_ok=True)
            log.info("removed a half-written segment of an interrupted run: %s", p.name)

    # ---------------------------------------------------------------- manifest
    def start(self, fingerprint: dict, config_hash: str, fresh: bool = False) -> tuple[Plan | None, str | None]:
        """Open the manifest for a run of this input and configuration.

        Returns:
            ``(plan, reason)``: the stored plan when the folder holds work of
            the same input and configuration (``reason`` ``None``), else
            ``(None, why the earlier work cannot be reused)`` (``None`` too when
            there was none); the folder is then emptied.
        """
        import chromaflow

        old = self._read_manifest()
        reason = None
        plan = None
        if old is not None:
            if fresh:
                reason = "--fresh was given"
            elif old.get("version") != WORK_VERSION:
                reason = (f"the work folder was made by chromaflow {old.get('chromaflow', '?')} "
                          f"(work version {old.get('version')!r}, this one reads {WORK_VERSION})")
            elif old.get("input") != fingerprint:
                reason = "the input has changed since the interrupted run"
            elif old.get("config") != config_hash:
                reason = "the configuration differs from the interrupted run's"
            else:
                try:
                    plan = Plan.from_dict(old["plan"])
                except (KeyError, ValueError) as exc:
                    reason = f"its manifest is damaged ({exc})"
        if plan is None:
            self._clear()
            self.manifest = {"version": WORK_VERSION, "chromaflow": chromaflow.__version__, "input": fingerprint,
                             "config": config_hash, "plan": None, "segments": {}}
        else:
            self.manifest = old
        return plan, reason

    def set_plan(self, plan: Plan) -> None:
        self.manifest["plan"] = plan.to_dict()
        self._write_manifest()

    def segment_path(self, shot: int) -> Path:
        return self.path / f"shot_{shot:05d}.mkv"

    def carry_path(self, shot: int) -> Path:
        """Where a window's last frame waits for the next window of its long shot."""
        return self.path / f"shot_{shot:05d}.carry.npz"

    def record(self, segment: Segment) -> None:
        """Add a finished segment to the manifest (atomically)."""
        self.manifest["segments"][str(segment.shot)] = segment.to_dict()
        self._write_manifest()

    def finished(self, shots: Sequence[int]) -> dict[int, Segment]:
        """The finished segments among ``shots`` that are intact; damaged ones are dropped (and redone).

        A segment the manifest does not list, but whose own description vouches
        for it (a run killed after the segment took its name, before the
        manifest was updated), is adopted.
        """
        out = {}
        adopted = False
        for i in shots:
            raw = self.manifest["segments"].get(str(i))
            if raw is None:
                seg = self._described(i)
                if seg is not None:
                    log.info("shot %d was finished but not yet recorded by the interrupted run: kept", i + 1)
                    self.manifest["segments"][str(i)] = seg.to_dict()
                    out[i] = seg
                    adopted = True
                continue
            try:
                seg = Segment.from_dict(i, raw)
            except (KeyError, TypeError, ValueError):
                seg = None
            if seg is None or not seg.intact(self.path):
                path = self.segment_path(i)
                log.warning("segment of shot %d is truncated or damaged (%s): colouring that shot again", i + 1,
                            path.name)
                del self.manifest["segments"][str(i)]
                path.unlink(missing_ok=True)
                description_path(path).unlink(missing_ok=True)
                continue
            out[i] = seg
        if adopted:
            self._write_manifest()
        return out

    def kept(self) -> int:
        """How many finished segments the folder holds (recorded, or described beside them; not verified)."""
        recorded = {self.segment_path(int(i)).name for i in self.manifest.get("segments", {})}
        described = {p.name for p in self.path.glob("shot_*.mkv") if description_path(p).is_file()}
        return len(recorded | described)

    def _described(self, shot: int) -> Segment | None:
        """The segment of ``shot`` its description file vouches for (same name, size and sha256), if any."""
        path = self.segment_path(shot)
        try:
            seg = Segment.from_dict(shot, json.loads(description_path(path).read_text(encoding="utf-8")))
        except (OSError, KeyError, TypeError, ValueError):
            return None
        return seg if seg.file == path.name and seg.intact(self.path) else None

    def _read_manifest(self) -> dict | None:
        path = self.path / _MANIFEST
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {"version": None, "chromaflow": "?"}

    def _write_manifest(self) -> None:
        try:
            _write_atomic(self.path / _MANIFEST, json.dumps(self.manifest))
        except OSError as exc:
            raise OutputError(f"cannot write the work folder {self.path}: {exc.strerror or exc}") from None

    def _clear(self) -> None:
        for p in self.path.iterdir():
            if p.name == _LOCK:
                continue
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    # -------------------------------------------------------------------- end
    def release(self) -> None:
        """Unlock (the finished segments stay for a resume)."""
        if not self._lock_fh.closed:
            self._lock_fh.close()

    def remove(self) -> None:
        """Delete the folder (after a successful run), emptying it while still holding the lock."""
        self._clear()
        self.release()
        shutil.rmtree(self.path, ignore_errors=True)

"""Implementation of :mod:`chromaflow.store` (see there)."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from chromaflow.errors import InputError, NotAvailableError

log = logging.getLogger("chromaflow")

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelEntry:
    """One named file of the manifest.

    Attributes:
        name: the name users and backends use (``deimv2_femto_coco``).
        file: its file name in a mirror folder and in the cache.
        urls: upstream URLs, tried in order.
        sha256: hex digest the file must have; empty when the publisher
            gives none (see ``sha256_prefix``, and the module doc on recorded digests).
        sha256_prefix: the leading hex digits of the digest, where that is all
            the publisher gives (torch.hub file names such as ``siggraph17-df00044c.pth``).
        size: its size in bytes, when known (0: unknown).
        licence: the weights' licence.
        used_by: what in chromaflow uses it.
        description: one line on what it is.
    """

    name: str
    file: str
    urls: tuple[str, ...]
    sha256: str
    size: int = 0
    sha256_prefix: str = ""
    licence: str = ""
    used_by: str = ""
    description: str = ""


@dataclass(frozen=True)
class StoreStatus:
    """Where a file stands: ``state`` is ``verified``, ``unverified`` (no published checksum and none
    recorded: usable, with a warning), ``missing``, ``bad checksum`` or ``bad size``."""

    entry: ModelEntry
    state: str
    path: Path | None = None
    detail: str = ""


def load_manifest(path: str | Path | None = None) -> dict[str, ModelEntry]:
    """The manifest's entries by name (default: the packaged ``manifest.toml``).

    Raises:
        InputError: a manifest that cannot be read or lacks a required key.
    """
    import tomllib

    try:
        if path is None:
            text = resources.files("chromaflow.store").joinpath("manifest.toml").read_text(encoding="utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"cannot read the model manifest {path or 'manifest.toml'}: {exc}") from None
    out = {}
    for name, raw in data.get("models", {}).items():
        try:
            out[name] = ModelEntry(
                name=name, file=raw["file"], urls=tuple(raw.get("urls", ())), sha256=raw["sha256"].lower(),
                size=int(raw.get("size", 0)), sha256_prefix=str(raw.get("sha256_prefix", "")).lower(), licence=raw.get("licence", ""), used_by=raw.get("used_by", ""),
                description=raw.get("description", ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"model manifest: entry {name!r} lacks or mistypes {exc}") from None
    return out


def cache_dir() -> Path:
    """Where downloaded models are kept (see the module doc)."""
    if os.environ.get("CHROMAFLOW_CACHE"):
        return Path(os.environ["CHROMAFLOW_CACHE"]) / "models"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chromaflow" / "models"


def env_mirrors() -> list[Path]:
    """The mirror folders named by ``CHROMAFLOW_MODEL_DIR``."""
    raw = os.environ.get("CHROMAFLOW_MODEL_DIR", "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


class ModelStore:
    """Finds, downloads and verifies the manifest's files (see :mod:`chromaflow.store`).

    Args:
        manifest: entries by name (default: the packaged manifest).
        mirrors: local mirror folders, searched first.
        cache: the download cache (default: :func:`cache_dir`).
        offline: never download (default: ``CHROMAFLOW_OFFLINE`` set to a non-empty value other than 0).
        timeout: seconds a connection may stall.
    """

    def __init__(
        self,
        manifest: dict[str, ModelEntry] | None = None,
        mirrors: Sequence[str | Path] = (),
        cache: str | Path | None = None,
        offline: bool | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.manifest = manifest if manifest is not None else load_manifest()
        self.mirrors = [Path(m).expanduser() for m in mirrors]
        self.cache = Path(cache) if cache is not None else cache_dir()
        if offline is None:
            offline = os.environ.get("CHROMAFLOW_OFFLINE", "") not in ("", "0")
        self.offline = offline
        self.timeout = timeout
        self._verified: set[Path] = set()

    # ----------------------------------------------------------------- lookup
    def entry(self, name: str) -> ModelEntry:
        try:
            return self.manifest[name]
        except KeyError:
            raise InputError(f"no model named {name!r}; known: {', '.join(sorted(self.manifest))}") from None

    def find(self, name: str) -> Path | None:
        """The file's path in a mirror or the cache, unverified (``None``: not here)."""
        entry = self.entry(name)
        for folder in (*self.mirrors, self.cache):
            path = folder / entry.file
            if path.is_file():
                return path
        return None

    def path(self, name: str, download: bool = True, progress: bool = True) -> Path:
        """The verified file, downloaded into the cache first if it is nowhere here.

        Raises:
            NotAvailableError: not here and not downloadable (offline, or every
                URL failed): one line naming the file, its URL and where to put it.
            InputError: the file found fails its checksum.
        """
        entry = self.entry(name)
        path = self.find(name)
        if path is None:
            if not download or self.offline:
                raise NotAvailableError(self._missing_message(entry))
            return self.fetch(name, progress=progress)
        self._check(entry, path)
        return path

    def resolve(self, spec: str | os.PathLike, label: str = "weights") -> Path:
        """A model name of the manifest (found or downloaded, verified) or a path to a file the user has.

        Raises:
            InputError: neither a known name nor an existing file (one line listing the names).
            NotAvailableError: a known name that is not here and cannot be downloaded.
        """
        text = str(spec)
        if text in self.manifest:
            return self.path(text)
        path = Path(text).expanduser()
        if path.is_file():
            return path
        if path.exists():
            raise InputError(f"{label} {text!r}: not a file")
        hint = "a file path or a model name"
        raise InputError(f"{label} {text!r}: no such file and no model of that name ({hint}; "
                         f"'chromaflow models list' shows the names)")

    def _missing_message(self, entry: ModelEntry, why: str = "") -> str:
        where = self.mirrors[0] if self.mirrors else self.cache
        url = entry.urls[0] if entry.urls else "(no public URL)"
        lead = f"model {entry.name!r} ({entry.file}) is not here" + (f" and {why}" if why else "")
        return (f"{lead}: run 'chromaflow models fetch {entry.name}' on a machine online, or download {url} "
                f"and put it at {where / entry.file} (or in a folder named by CHROMAFLOW_MODEL_DIR / --model-dir)")

    def _check(self, entry: ModelEntry, path: Path) -> None:
        if path in self._verified:
            return
        status = self._status_of(entry, path)
        if status.state == "unverified":
            log.warning("model %s at %s: %s (the publisher gives none to check it against)",
                        entry.name, path, status.detail)
        elif status.state != "verified":
            raise InputError(f"model {entry.name!r} at {path}: {status.state} ({status.detail}); "
                             f"delete it and run 'chromaflow models fetch {entry.name}'")
        self._verified.add(path)

    def _status_of(self, entry: ModelEntry, path: Path) -> StoreStatus:
        size = path.stat().st_size
        if entry.size and size != entry.size:
            return StoreStatus(entry, "bad size", path, f"{size} bytes, expected {entry.size}")
        digest = sha256_of(path)
        expected, how = self._expected(entry, path)
        if not expected:
            return StoreStatus(entry, "unverified", path, f"no published checksum; sha256 {digest[:12]}...")
        if not digest.startswith(expected):
            return StoreStatus(entry, "bad checksum", path, f"sha256 {digest[:12]}..., expected {expected[:12]}... ({how})")
        return StoreStatus(entry, "verified", path)

    @staticmethod
    def _expected(entry: ModelEntry, path: Path) -> tuple[str, str]:
        """``(expected digest or prefix, where it comes from)``; empty when nothing is known."""
        if entry.sha256:
            return entry.sha256, "manifest"
        if entry.sha256_prefix:
            return entry.sha256_prefix, "the publisher's file name"
        recorded = _recorded_digest(path)
        return (recorded, "recorded at download") if recorded else ("", "")

    def fetched_state(self, name: str, path: Path) -> str:
        """The state of a file :meth:`fetch` returned, without hashing it again: ``verified`` when a digest
        (published, or recorded at download) was checked, else ``unverified``."""
        return "verified" if self._expected(self.entry(name), path)[0] else "unverified"

    def verify(self, names: Sequence[str] | None = None) -> list[StoreStatus]:
        """The status of each named file (default: all), without downloading."""
        out = []
        for name in names or sorted(self.manifest):
            entry = self.entry(name)
            path = self.find(name)
            out.append(StoreStatus(entry, "missing") if path is None else self._status_of(entry, path))
        return out

    # --------------------------------------------------------------- download
    def fetch(self, name: str, progress: bool = True, force: bool = False) -> Path:
        """Download ``name`` into the cache (resuming a partial download), verify it, return its path.

        A file already verified in a mirror or the cache is not downloaded
        again unless ``force``.

        Raises:
            NotAvailableError: offline, or no URL gave a file with the right checksum.
        """
        entry = self.entry(name)
        if not force:
            found = self.find(name)
            if found is not None and self._status_of(entry, found).state in ("verified", "unverified"):
                self._verified.add(found)
                return found
        if self.offline:
            raise NotAvailableError(self._missing_message(entry, "downloads are off (CHROMAFLOW_OFFLINE)"))
        if not entry.urls:
            raise NotAvailableError(self._missing_message(entry, "it has no download URL"))
        try:
            self.cache.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NotAvailableError(f"cannot create the model cache {self.cache}: {exc.strerror or exc}") from None
        target = self.cache / entry.file
        part = target.with_name(target.name + ".part")
        errors = []
        with _FileLock(target.with_name(f".{target.name}.lock")):
            if not force and target.is_file() and self._status_of(entry, target).state in ("verified", "unverified"):
                self._verified.add(target)  # another process fetched it while we waited
                return target
            for url in entry.urls:
                base, member = split_member(url)
                try:
                    if member is None:
                        self._download(base, part, entry, progress)
                    else:
                        archive = target.with_name(f".{target.name}.archive.part")
                        self._download(base, archive, entry, progress, size=0)
                        try:
                            extract_member(archive, member, part)
                        finally:
                            archive.unlink(missing_ok=True)  # complete or not a usable archive: not resumed
                except (urllib.error.URLError, OSError, TimeoutError) as exc:
                    reason = getattr(exc, "reason", None) or exc
                    errors.append(f"{url}: {reason}")
                    continue
                digest = sha256_of(part)
                expected = entry.sha256 or entry.sha256_prefix
                if expected and not digest.startswith(expected):
                    part.unlink(missing_ok=True)  # a wrong file must not be resumed
                    errors.append(f"{url}: checksum mismatch (sha256 {digest[:12]}...)")
                    continue
                os.replace(part, target)
                if expected:
                    log.info("model %s: %s (%d bytes, sha256 verified)", entry.name, target, target.stat().st_size)
                else:  # nothing published: record the digest, so later corruption is caught
                    _record_digest(target, digest)
                    log.warning("model %s: %s (%d bytes); the publisher gives no checksum, its sha256 %s is recorded "
                                "and checked from now on", entry.name, target, target.stat().st_size, digest)
                self._verified.add(target)
                return target
        raise NotAvailableError(self._missing_message(entry, f"could not be downloaded ({'; '.join(errors)})"))

    def _download(self, url: str, part: Path, entry: ModelEntry, progress: bool, size: int | None = None) -> None:
        """Download ``url`` into ``part``, resuming what it holds (``size``: expected bytes, default the entry's)."""
        have = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"User-Agent": "chromaflow"})
        if have:
            request.add_header("Range", f"bytes={have}-")
        with urllib.request.urlopen(request, timeout=self.timeout) as resp:
            status = getattr(resp, "status", 200)
            if have and status != 206:  # the server ignored the range: start over
                have = 0
            length = resp.headers.get("Content-Length")
            total = (have + int(length)) if length is not None else ((entry.size if size is None else size) or None)
            if have:
                log.info("model %s: resuming the download at %d bytes", entry.name, have)
            report = _progress(entry.name, total, have, progress)
            with open(part, "ab" if have else "wb") as fh:
                done = have
                while True:
                    block = resp.read(_CHUNK)
                    if not block:
                        break
                    fh.write(block)
                    done += len(block)
                    report(done)
                report(done, final=True)
            if total is not None and part.stat().st_size < total:
                raise OSError(f"connection closed after {part.stat().st_size} of {total} bytes (run again to resume)")


def split_member(url: str) -> tuple[str, str | None]:
    """``(url, member)`` of a manifest URL: ``ARCHIVE_URL#member=PATH`` names a file inside a ``.tar.gz``,
    ``.tar`` or ``.zip`` (a package's source distribution); a plain URL has member ``None``."""
    base, _, fragment = url.partition("#")
    return (base, fragment[len("member="):]) if fragment.startswith("member=") else (url, None)


def extract_member(archive: Path, member: str, out: Path) -> None:
    """Copy the file ``member`` of ``archive`` (tar, compressed or not, or zip) to ``out``.

    Raises:
        OSError: not such an archive, or it has no such file.
    """
    import shutil
    import tarfile
    import zipfile

    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf, zf.open(member) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
            return
        with tarfile.open(archive) as tf:
            src = tf.extractfile(member)
            if src is None:
                raise KeyError(member)
            with src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
    except KeyError:
        out.unlink(missing_ok=True)
        raise OSError(f"the archive has no file {member}") from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        out.unlink(missing_ok=True)
        raise OSError(f"not a readable archive ({exc})") from None


def _progress(name: str, total: int | None, start: int, enabled: bool) -> Callable[..., None]:
    """A ``(done, final=False)`` reporter: a rich bar on a terminal, log lines every 10 s otherwise."""
    if not enabled:
        return lambda done, final=False: None
    if sys.stderr.isatty():
        from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

        bar = Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(), transient=True)
        task = bar.add_task(f"downloading {name}", total=total, completed=start)
        bar.start()

        def report(done: int, final: bool = False) -> None:
            bar.update(task, completed=done)
            if final:
                bar.stop()

        return report
    last = [time.monotonic()]
    log.info("model %s: downloading%s", name, f" ({total} bytes)" if total else "")

    def report(done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - last[0] >= 10:
            last[0] = now
            log.info("model %s: %d%s bytes", name, done, f" of {total}" if total else "")

    return report


def _digest_file(path: Path) -> Path:
    return path.with_name(f".{path.name}.sha256")


def _recorded_digest(path: Path) -> str:
    """The sha256 recorded when ``path`` was downloaded without a published checksum ("" if none)."""
    try:
        return _digest_file(path).read_text(encoding="ascii").strip().lower()
    except OSError:
        return ""


def _record_digest(path: Path, digest: str) -> None:
    try:
        _digest_file(path).write_text(digest + "\n", encoding="ascii")
    except OSError as exc:
        log.warning("cannot record the sha256 of %s: %s", path, exc.strerror or exc)


class _FileLock:
    """An exclusive lock on a file (POSIX ``flock``), so two processes do not download into one ``.part``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = None

    def __enter__(self) -> _FileLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return self
        self._fh = open(self.path, "a")
        fcntl.flock(self._fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()  # the lock file stays: removing it would let two processes lock two files


_DEFAULT: ModelStore | None = None
_EXTRA_MIRRORS: list[Path] = []


def configure_store(model_dirs: Sequence[str | Path] = ()) -> ModelStore:
    """Make the process-wide store, with ``model_dirs`` (``--model-dir``) searched before ``CHROMAFLOW_MODEL_DIR``."""
    global _DEFAULT, _EXTRA_MIRRORS
    _EXTRA_MIRRORS = [Path(d).expanduser() for d in model_dirs]
    for d in _EXTRA_MIRRORS:
        if not d.is_dir():
            raise InputError(f"--model-dir {d}: not a folder")
    _DEFAULT = ModelStore(mirrors=[*_EXTRA_MIRRORS, *env_mirrors()])
    return _DEFAULT


def default_store() -> ModelStore:
    """The process-wide store (made on first use from the environment)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = ModelStore(mirrors=[*_EXTRA_MIRRORS, *env_mirrors()])
    return _DEFAULT

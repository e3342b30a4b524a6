"""Registered backends by kind: colorizers, fill steps, flow estimators, prompt grounders.

A backend is a named factory plus its options dataclass and what it needs::

    from chromaflow.registry import register

    @dataclass(frozen=True)
    class MyOptions:
        strength: float = 1.0

    @register("colorizer", "mine", options=MyOptions, description="my colorizer")
    def make_mine(options: MyOptions, runtime: Runtime) -> Colorizer:
        return MyColorizer(options.strength)

after which ``chromaflow colorize IN -o OUT --colorizer mine`` runs it; the
engine, the pipeline and the CLI are not edited.  Kinds and what a factory
returns:

* ``colorizer``: a :class:`~chromaflow.colorizers.base.Colorizer` (keyframes);
* ``fill``: a :class:`~chromaflow.fill.base.ChromaFill` (completes unreliable chroma);
* ``flow``: a :class:`~chromaflow.temporal.flow.FlowEstimator`;
* ``grounder``: a :class:`~chromaflow.guidance.grounding.Grounder` (finds a prompt's objects).

Factories receive ``(options, runtime)`` (:class:`~chromaflow.runtime.Runtime`:
device, threads, shared networks) and may read named weights through
:func:`chromaflow.store.default_store`.  :class:`Components` builds each
(kind, name, options) once and keeps it, so a server or a batch reuses loaded
models across runs.

Third-party packages add backends through the entry-point group
``chromaflow.backends``: each entry point names a module (or a callable) that
registers its backends when loaded.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chromaflow.errors import InputError, NotAvailableError

log = logging.getLogger("chromaflow")

KINDS = ("colorizer", "fill", "flow", "grounder")
ENTRY_POINT_GROUP = "chromaflow.backends"

#: Modules whose import registers the built-in backends.
_BUILTIN_MODULES = (
    "chromaflow.colorizers.chroma_model",
    "chromaflow.colorizers.ddcolor",
    "chromaflow.colorizers.zhang",
    "chromaflow.colorizers.sd",
    "chromaflow.fill.levin",
    "chromaflow.fill.model",
    "chromaflow.fill.siggraph17",
    "chromaflow.fill.sd",
    "chromaflow.temporal.flow",
    "chromaflow.guidance.grounding",
    "chromaflow.guidance.grounders",
)


@dataclass(frozen=True)
class NoOptions:
    """A backend without options."""


@dataclass(frozen=True)
class Backend:
    """One registered backend.

    Attributes:
        kind: one of :data:`KINDS`.
        name: the name users select it by (``--fill levin``).
        factory: ``(options, runtime) -> component``.
        options: its options dataclass (every field has a default).
        description: one line for ``chromaflow backends``.
        packages: importable modules it needs (optional extras).
        weights: model-store names of files it needs (:mod:`chromaflow.store`).
        licence: licence of the weights it loads, if any.
        check: optional ``options -> reason or None``: why it cannot run here
            with these options (a missing user-given file, ...).
    """

    kind: str
    name: str
    factory: Callable[[Any, Any], Any]
    options: type = NoOptions
    description: str = ""
    packages: tuple[str, ...] = ()
    weights: tuple[str, ...] = ()
    licence: str = ""
    check: Callable[[Any], str | None] | None = None

    def unavailable(self, options: Any = None) -> str | None:
        """Why this backend cannot run on this machine (``None``: it can)."""
        missing = _missing_packages(self)
        if missing:
            return f"needs the Python package{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
        if self.weights:
            from chromaflow.store import default_store

            store = default_store()
            absent = [w for w in self.weights if store.find(w) is None]
            if absent:
                return f"weights not found here: {', '.join(absent)} (chromaflow models fetch NAME)"
        if self.check is not None:
            return self.check(options if options is not None else self.options())
        return None


_REGISTRY: dict[tuple[str, str], Backend] = {}
_LOADED = False
_LOAD_LOCK = threading.RLock()


def register(
    kind: str,
    name: str,
    *,
    options: type = NoOptions,
    description: str = "",
    packages: tuple[str, ...] = (),
    weights: tuple[str, ...] = (),
    licence: str = "",
    check: Callable[[Any], str | None] | None = None,
) -> Callable[[Callable], Callable]:
    """Decorator: register ``factory`` as backend ``name`` of ``kind`` (see the module doc).

    Registering a name again replaces the earlier backend (a test or a
    plug-in may override a built-in).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown backend kind {kind!r}; kinds: {', '.join(KINDS)}")

    def deco(factory: Callable) -> Callable:
        _REGISTRY[(kind, name)] = Backend(kind, name, factory, options, description, tuple(packages),
                                          tuple(weights), licence, check)
        return factory

    return deco


def unregister(kind: str, name: str) -> None:
    """Remove a backend (tests that registered one clean up with this)."""
    _REGISTRY.pop((kind, name), None)


def _load() -> None:
    global _LOADED
    with _LOAD_LOCK:
        if _LOADED:
            return
        _LOADED = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                loaded = ep.load()
                if callable(loaded):
                    loaded()
            except Exception as exc:  # noqa: BLE001 - a broken plug-in must not break chromaflow
                log.warning("backend plug-in %s (%s) failed to load: %s", ep.name, ep.value, exc)


def backends(kind: str | None = None) -> list[Backend]:
    """Every registered backend (of ``kind``), built-ins first, in registration order."""
    _load()
    found = [b for b in _REGISTRY.values() if kind is None or b.kind == kind]
    return sorted(found, key=lambda b: KINDS.index(b.kind))  # stable: registration order within a kind


def names(kind: str) -> list[str]:
    """Names of the backends of ``kind``."""
    return [b.name for b in backends(kind)]


def get(kind: str, name: str) -> Backend:
    """The backend ``name`` of ``kind``.

    Raises:
        InputError: no such backend (the message lists the known ones).
    """
    _load()
    if kind not in KINDS:
        raise InputError(f"unknown backend kind {kind!r}; kinds: {', '.join(KINDS)}")
    try:
        return _REGISTRY[(kind, name)]
    except KeyError:
        raise InputError(f"unknown {kind} {name!r}; available: {', '.join(names(kind))}") from None


def options_key(options: Any) -> str:
    """A stable text key of an options dataclass (for caching components by their options)."""
    import json

    from chromaflow.config import to_dict

    return json.dumps(to_dict(options), sort_keys=True, default=str)


@dataclass
class Components:
    """Builds backends once per (kind, name, options) on one runtime and keeps them.

    Args:
        runtime: the :class:`~chromaflow.runtime.Runtime` every factory receives.
    """

    runtime: Any
    _built: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def build(self, kind: str, name: str, options: Any = None) -> Any:
        """The component (built on first request).

        Raises:
            InputError: unknown backend, or options of the wrong type.
            NotAvailableError: its packages or weights are missing here.
        """
        backend = get(kind, name)
        if options is None:
            options = backend.options()
        if not isinstance(options, backend.options):
            raise InputError(f"{kind} {name!r} takes {backend.options.__name__}, got {type(options).__name__}")
        key = (kind, name, options_key(options))
        with self._lock:
            if key not in self._built:
                missing = _missing_packages(backend)
                if missing:
                    raise NotAvailableError(f"{kind} {name!r} cannot run here: it needs the Python package(s) "
                                            f"{', '.join(missing)}")
                self._built[key] = backend.factory(options, self.runtime)
            return self._built[key]


def _missing_packages(backend: Backend) -> list[str]:
    return [p for p in backend.packages if importlib.util.find_spec(p) is None]

"""The run configuration: one tree of typed options, from defaults, a TOML file and flags.

:class:`ColorizeOptions` is the whole configuration of a run.  Its sections
belong to the components that read them::

    seed = 0
    [guidance]        references, palette, prompt      (GuidanceOptions)
    [output]          codec, crf, lossless, pix_fmt, fps (OutputOptions)
    [engine]          working size, keyframes, ...     (EngineOptions)
    [colorizer]       name = "model"  + [colorizer.model] its options
    [fill]            name = "levin"  + [fill.levin]
    [flow]            name = "dis"    + [flow.dis]
    [grounder]        name = "auto"   + [grounder.auto]
    [matcher]         semantic correspondence          (MatcherOptions)
    [runtime]         device, threads, precision       (RuntimeOptions)

A backend's options table is named after the backend; its fields are that
backend's options dataclass (registered with it, :mod:`chromaflow.registry`),
so adding an option touches its component only.  :func:`config_from_dict`
reads such a tree (unknown keys and bad values are one-line
:class:`~chromaflow.config.ConfigError`), :func:`config_to_toml` writes it,
with every option's documentation as a comment (``chromaflow config``), and
the same text is stored beside every output (``OUTPUT.chromaflow.toml``) so a
result can be reproduced with ``--config``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chromaflow.config import ConfigError, from_dict, to_dict, toml_table, toml_value
from chromaflow.errors import InputError
from chromaflow.guidance.correspondence import MatcherOptions
from chromaflow.pipeline.engine import EngineOptions
from chromaflow.runtime import RuntimeOptions

#: Component kinds with a backend choice, and their default backend.
DEFAULT_BACKENDS = {"colorizer": "model", "fill": "levin", "flow": "dis", "grounder": "auto"}


@dataclass(frozen=True)
class ReferenceSpec:
    """``--reference PATH [--reference-frame N]``: a colour image, optionally a frame of the video.

    Attributes:
        path: the colour image.
        frame: the video frame it is the colour version of (unset: a related photo).
    """

    path: Path
    frame: int | None = None


@dataclass(frozen=True)
class Choice:
    """Which backend of a kind runs, and its options.

    Attributes:
        name: the backend's registered name.
        options: its options dataclass (``None``: the backend's defaults).
    """

    name: str
    options: Any = None


def _choice(kind: str) -> Any:
    return field(default_factory=lambda: Choice(DEFAULT_BACKENDS[kind]))


@dataclass(frozen=True)
class ColorizeOptions:
    """Options of :func:`chromaflow.colorize`: the run configuration (see the module doc).

    Attributes:
        references: colour references (exemplars).
        palette: ``--palette`` spec (hex colours or colour names, ``auto``,
            ``tags``, an image or video path), or ``None``.
        palette_per_shot: with ``palette="tags"``, each shot gets the palette of
            its own content instead of one palette for the whole video.
        prompt: text prompt, or ``None``.
        seed: seed for every random choice (same input + options + seed = same output).
        codec: video output codec: h264 (plays everywhere), h265 (smaller, 10-bit), prores (editing, .mov),
            ffv1 (lossless archive, .mkv).
        crf: h264 / h265 quality, 0-51, lower is better (18: visually lossless; 0: lossless).
        lossless: keep every pixel's gray exactly (h264 / h265 4:4:4: FFmpeg-based players only; ffv1 always is).
        pix_fmt: FFmpeg pixel format of a video output (unset: the codec's, yuv420p for h264).
        fps: frame rate of a video written from a frame directory (default 25).
        engine: options of the temporal engine (working size, keyframes, ablations).
        colorizer, fill, flow, grounder: the backend of each kind and its
            options (a plain name is accepted: ``fill="model"``).
        matcher: the semantic matcher of references that are not frames.
        runtime: device, threads and precision of every torch component.
        overwrite: replace an existing output.
        save_masks: folder for the prompt's object masks and hints per grounded
            frame (see :mod:`chromaflow.io.inspection`), or ``None``.
        progress: ``auto`` (a bar on a terminal, log lines otherwise), ``bar``,
            ``log`` or ``none`` (``True`` / ``False`` stand for auto / none).
        frames: ``(start, end)``: colour only these frames (end excluded,
            ``None``: to the end); the plan of the whole video keeps them as in a full run.
        work_dir: where the work folder of finished shots goes (``.NAME.chromaflow-work``,
            a folder of its own inside it; default: beside the output).
        fresh: ignore the finished shots of an interrupted run.
        executor: where shots are coloured: ``inprocess``, ``pool`` or ``ray``.
        workers: processes of the pool, or CPUs of a local Ray instance (default: all cores).
        ray_address: a Ray cluster to run on (implies ``executor="ray"``).
        allow_partial: colour the frames of a truncated or damaged input that decode (a warning says how
            many) instead of refusing it.

    The last ten fields say how to run, not what colours to make: they are
    not part of the configuration file.
    """

    references: tuple[ReferenceSpec, ...] = field(default_factory=tuple)
    palette: str | None = None
    palette_per_shot: bool = False
    prompt: str | None = None
    seed: int = 0
    codec: str = "h264"
    crf: int = 18
    lossless: bool = False
    pix_fmt: str | None = None
    fps: float | None = None
    engine: EngineOptions = field(default_factory=EngineOptions)
    colorizer: Choice = _choice("colorizer")
    fill: Choice = _choice("fill")
    flow: Choice = _choice("flow")
    grounder: Choice = _choice("grounder")
    matcher: MatcherOptions = field(default_factory=MatcherOptions)
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    overwrite: bool = False
    save_masks: Path | None = None
    progress: str | bool = "auto"
    frames: tuple[int, int | None] | None = None
    work_dir: Path | None = None
    fresh: bool = False
    executor: str = "inprocess"
    workers: int | None = None
    ray_address: str | None = None
    allow_partial: bool = False

    def __post_init__(self) -> None:
        for kind in DEFAULT_BACKENDS:
            value = getattr(self, kind)
            if isinstance(value, str):
                object.__setattr__(self, kind, Choice(value))
        if isinstance(self.progress, bool):
            object.__setattr__(self, "progress", "auto" if self.progress else "none")
        if not 0 <= int(self.crf) <= 51:
            raise ConfigError(f"crf must be in 0-51, got {self.crf}")
        try:
            self.encoding()
        except InputError as exc:
            raise ConfigError(str(exc)) from None
        if self.fps is not None and not self.fps > 0:
            raise ConfigError(f"fps must be positive, got {self.fps}")

    def encoding(self):
        """The :class:`~chromaflow.io.sink.VideoEncoding` of a video output."""
        from chromaflow.io.sink import VideoEncoding

        return VideoEncoding(self.codec, self.crf, self.lossless, self.pix_fmt)

    def resolved(self) -> ColorizeOptions:
        """These options with every backend's options filled in (its defaults where unset).

        Raises:
            InputError: an unknown backend, or options of another backend's type.
        """
        from chromaflow import registry

        changes = {}
        for kind in DEFAULT_BACKENDS:
            choice = getattr(self, kind)
            backend = registry.get(kind, choice.name)
            options = choice.options if choice.options is not None else backend.options()
            if not isinstance(options, backend.options):
                raise ConfigError(f"{kind} {choice.name!r} takes {backend.options.__name__}, "
                                  f"not {type(options).__name__}")
            changes[kind] = Choice(choice.name, options)
        return dataclasses.replace(self, **changes)


#: Fields of ColorizeOptions that describe an invocation, not the colours: not in the configuration file.
_NOT_STORED = ("overwrite", "save_masks", "progress", "frames", "work_dir", "fresh", "executor", "workers",
               "ray_address", "allow_partial")
_SECTIONS = {"guidance": ("references", "palette", "palette_per_shot", "prompt"),
             "output": ("codec", "crf", "lossless", "pix_fmt", "fps")}
_TOP = ("seed",)
_PLAIN = ("engine", "matcher", "runtime")


def config_to_dict(options: ColorizeOptions) -> dict[str, Any]:
    """The configuration tree of ``options`` (resolved) as plain TOML data."""
    options = options.resolved()
    out: dict[str, Any] = {"seed": options.seed}
    for section, names in _SECTIONS.items():
        out[section] = {k: v for k in names if (v := _plain(getattr(options, k))) is not None}
    for name in _PLAIN:
        out[name] = to_dict(getattr(options, name))
    for kind in DEFAULT_BACKENDS:
        choice = getattr(options, kind)
        out[kind] = {"name": choice.name, choice.name: to_dict(choice.options)}
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [{k: (str(v) if isinstance(v, Path) else v) for k, v in to_dict(x).items()} for x in value]
    if isinstance(value, Path):
        return str(value)
    return value


def config_from_dict(data: dict[str, Any], base: ColorizeOptions | None = None) -> ColorizeOptions:
    """Read a configuration tree over ``base`` (default: the defaults).

    Raises:
        ConfigError: an unknown section or key, a bad value, or an unknown backend.
    """
    from chromaflow import registry

    base = base or ColorizeOptions()
    known = set(_TOP) | set(_SECTIONS) | set(_PLAIN) | set(DEFAULT_BACKENDS)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    changes: dict[str, Any] = {}
    if "seed" in data:
        if isinstance(data["seed"], bool) or not isinstance(data["seed"], int):
            raise ConfigError(f"seed: expected an integer, got {data['seed']!r}")
        changes["seed"] = data["seed"]
    flat_fields = {f.name: f for f in dataclasses.fields(ColorizeOptions)}
    for section, names in _SECTIONS.items():
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{section}: expected a table")
        bad = sorted(set(table) - set(names))
        if bad:
            raise ConfigError(f"unknown key {section}.{bad[0]} (known: {', '.join(names)})")
        sub = _section_class(section, names, flat_fields)
        values = from_dict(sub, table, section, base=sub(**{n: getattr(base, n) for n in names}))
        changes.update({n: getattr(values, n) for n in names})
    for name in _PLAIN:
        if name in data:
            changes[name] = from_dict(type(getattr(base, name)), data[name], name, base=getattr(base, name))
    for kind in DEFAULT_BACKENDS:
        if kind not in data:
            continue
        table = data[kind]
        if not isinstance(table, dict):
            raise ConfigError(f"{kind}: expected a table with name = \"...\"")
        current = getattr(base, kind)
        name = table.get("name", current.name)
        if not isinstance(name, str):
            raise ConfigError(f"{kind}.name: expected a string")
        chosen = None
        for key, sub in table.items():
            if key == "name":
                continue
            try:
                backend = registry.get(kind, key)
            except Exception:
                raise ConfigError(f"unknown key {kind}.{key}: no {kind} backend of that name "
                                  f"(available: {', '.join(registry.names(kind))})") from None
            prior = current.options if (current.name == key and current.options is not None) else backend.options()
            parsed = from_dict(backend.options, sub, f"{kind}.{key}", base=prior)
            if key == name:
                chosen = parsed
        try:
            backend = registry.get(kind, name)
        except Exception as exc:
            raise ConfigError(f"{kind}.name: {exc}") from None
        if chosen is None:
            chosen = current.options if current.name == name else None
        changes[kind] = Choice(name, chosen if chosen is not None else backend.options())
    try:
        return dataclasses.replace(base, **changes)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


_SECTION_CLASSES: dict[str, type] = {}


def _section_class(section: str, names: tuple[str, ...], flat: dict) -> type:
    """A dataclass with the fields ``names`` of :class:`ColorizeOptions` (types and docs), to read a section."""
    if section not in _SECTION_CLASSES:
        import typing

        from chromaflow.config import field_docs

        hints = typing.get_type_hints(ColorizeOptions)
        docs = field_docs(ColorizeOptions)
        def copy(f: dataclasses.Field) -> dataclasses.Field:
            if f.default is not dataclasses.MISSING:
                return field(default=f.default)
            return field(default_factory=f.default_factory)

        cls = dataclasses.make_dataclass(
            f"{section.title()}Options", [(n, hints[n], copy(flat[n])) for n in names], frozen=True)
        cls.__doc__ = "Attributes:\n" + "\n".join(f"    {n}: {docs.get(n, '')}" for n in names)
        _SECTION_CLASSES[section] = cls
    return _SECTION_CLASSES[section]


def config_to_toml(options: ColorizeOptions | None = None, header: str = "", alternatives: bool = True) -> str:
    """The configuration as TOML, every option with its documentation as a comment.

    Args:
        options: the run configuration (default: the defaults).
        header: comment lines put first.
        alternatives: also write every other registered backend's options,
            commented out, under each kind (``chromaflow config``).
    """
    from chromaflow import registry

    options = (options or ColorizeOptions()).resolved()
    data = config_to_dict(options)
    flat = {f.name: f for f in dataclasses.fields(ColorizeOptions)}
    lines = [f"# {line}" if line else "#" for line in header.splitlines()] if header else []
    lines += ["# seed for every random choice: the same input, options and seed give the same output",
              f"seed = {toml_value(data['seed'])}", ""]
    for section, names in _SECTIONS.items():
        lines += toml_table(section, _section_class(section, names, flat), data[section]) + [""]
    for name in _PLAIN:
        lines += toml_table(name, type(getattr(options, name)), data[name]) + [""]
    for kind in DEFAULT_BACKENDS:
        choice = getattr(options, kind)
        avail = registry.names(kind)
        lines += [f"[{kind}]", f"# the {kind} backend: {' | '.join(avail)} (chromaflow backends lists them)",
                  f"name = {toml_value(choice.name)}", ""]
        backend = registry.get(kind, choice.name)
        lines += toml_table(f"{kind}.{choice.name}", backend.options, data[kind][choice.name],
                            lead=backend.description) + [""]
        if alternatives:
            for other in registry.backends(kind):
                if other.name == choice.name:
                    continue
                lines += toml_table(f"{kind}.{other.name}", other.options, to_dict(other.options()), prefix="# ",
                                    lead=f"{other.description} (select with name = \"{other.name}\")") + [""]
    return "\n".join(lines).rstrip() + "\n"


def load_config(path: str | Path, base: ColorizeOptions | None = None,
                choose: dict[str, str] | None = None) -> ColorizeOptions:
    """Read a ``run.toml`` over ``base``.

    Args:
        choose: backend names by kind that replace the file's ``name`` keys
            (``--colorizer ddcolor`` with a file holding ``[colorizer.ddcolor]``
            options runs ddcolor with those options).

    Raises:
        ConfigError: an unreadable file, bad TOML, an unknown key or a bad value (one line, with the key).
    """
    from chromaflow.config import load_toml

    data = load_toml(path)
    for kind, name in (choose or {}).items():
        table = data.setdefault(kind, {})
        if isinstance(table, dict):
            table["name"] = name
    try:
        return config_from_dict(data, base)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None

"""The ``chromaflow`` command line; a thin wrapper over the Python API.

Every user error ends in one line on stderr and a non-zero exit, never a
traceback (set ``CHROMAFLOW_DEBUG=1`` to see tracebacks of internal errors).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from chromaflow.errors import ChromaflowError, InputError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: option names stay whole at 80 columns (rich's panels cut them)
    help="Temporally consistent colorization of black-and-white video.",
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("chromaflow")
        except PackageNotFoundError:  # running from a source tree that is not installed
            from chromaflow import __version__ as text
        typer.echo(f"chromaflow {text}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Temporally consistent colorization of black-and-white video."""


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = "chromaflow: " if record.levelno < logging.WARNING else f"chromaflow: {record.levelname.lower()}: "
        return prefix + record.getMessage()


def _setup_logging(quiet: bool = False) -> None:
    logger = logging.getLogger("chromaflow")
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False


def _handle_errors(fn):
    """Turn errors into one line on stderr and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ChromaflowError as exc:
            typer.echo(f"chromaflow: error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("chromaflow: interrupted; no output was written (finished shots are kept: the same "
                       "command resumes)", err=True)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:  # noqa: BLE001
            if os.environ.get("CHROMAFLOW_DEBUG"):
                raise
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            typer.echo(
                f"chromaflow: internal error: {type(exc).__name__}: {msg} "
                "(set CHROMAFLOW_DEBUG=1 for details)",
                err=True,
            )
            raise typer.Exit(1) from None

    return wrapper


def _pair_references(refs: list[Path], frames: list[int]) -> tuple:
    from chromaflow.pipeline.options import ReferenceSpec

    if frames and len(frames) != len(refs):
        raise InputError(
            f"{len(refs)} --reference but {len(frames)} --reference-frame: give a frame for every "
            "reference (in the same order) or for none"
        )
    if frames:
        return tuple(ReferenceSpec(Path(r), int(f)) for r, f in zip(refs, frames))
    return tuple(ReferenceSpec(Path(r), None) for r in refs)


def _options_from_flags(config: Path | None, flags: dict):
    """The run configuration: defaults, then the ``--config`` file, then the flags that were given."""
    from dataclasses import replace

    from chromaflow.pipeline import ColorizeOptions, load_config
    from chromaflow.pipeline.options import Choice

    chosen = {kind: flags[kind] for kind in ("colorizer", "fill", "grounder") if flags.get(kind)}
    options = load_config(config, choose=chosen) if config is not None else ColorizeOptions()
    options = options.resolved()
    top = {k: flags[k] for k in ("palette", "prompt", "seed", "codec", "crf", "pix_fmt", "fps")
           if flags.get(k) is not None}
    if flags.get("lossless") is not None:
        top["lossless"] = flags["lossless"]
    if flags.get("per_shot_palette"):
        top["palette_per_shot"] = True
    if flags.get("reference"):
        top["references"] = _pair_references(flags["reference"], flags.get("reference_frame") or [])
    elif flags.get("reference_frame"):
        raise InputError("--reference-frame needs a --reference")
    engine = {}
    if flags.get("work_size") is not None:
        engine["work_max_side"] = flags["work_size"]
    if flags.get("keyframe"):
        engine["keyframes"] = tuple(flags["keyframe"])
    if flags.get("skin_prior") is not None:
        engine["skin_prior"] = flags["skin_prior"]
    if engine:
        top["engine"] = replace(options.engine, **engine)
    runtime = {k: flags[k] for k in ("device", "threads") if flags.get(k) is not None}
    if runtime:
        try:
            top["runtime"] = replace(options.runtime, **runtime)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    options = replace(options, **top)
    for kind in ("colorizer", "fill", "grounder"):
        if flags.get(kind) and flags[kind] != getattr(options, kind).name:  # the same name keeps the config's options
            options = replace(options, **{kind: Choice(flags[kind])})
    if flags.get("flow"):
        from chromaflow.temporal.flow import parse_flow_spec

        try:
            name, flow_options = parse_flow_spec(flags["flow"])
        except ValueError as exc:
            raise InputError(f"--flow: {exc}") from None
        options = replace(options, flow=Choice(name, flow_options))
    options = options.resolved()
    return _sd_flags(_model_flags(options, flags), flags)


def _sd_flags(options, flags: dict):
    """``--sd-model``, ``--controlnet``: the model of the Stable Diffusion backends (``--colorizer sd``, ``--fill sd``)."""
    from dataclasses import replace

    from chromaflow.pipeline.options import Choice

    given = {k: flags[f] for k, f in (("model", "sd_model"), ("controlnet", "controlnet")) if flags.get(f)}
    if not given:
        return options
    kinds = [k for k in ("colorizer", "fill") if getattr(options, k).name == "sd"]
    if not kinds:
        raise InputError(f"{', '.join('--' + f.replace('_', '-') for f in ('sd_model', 'controlnet') if flags.get(f))}"
                         " sets the Stable Diffusion backends: add --colorizer sd and/or --fill sd")
    for kind in kinds:
        choice = getattr(options, kind)
        options = replace(options, **{kind: Choice("sd", replace(choice.options, **given))})
    return options


def _model_flags(options, flags: dict):
    """``--model``, ``--steps``, ``--temperature``, ``--saturation``: shorthands for the embedded model's options
    (the colorizer's, and the model fill's weights)."""
    from dataclasses import replace

    from chromaflow.pipeline.options import Choice

    given = {k: flags.get(k) for k in ("model", "steps", "temperature", "saturation")}
    if all(v is None for v in given.values()):
        return options
    if options.colorizer.name != "model":
        others = [f"--{k}" for k in ("steps", "temperature", "saturation") if given[k] is not None]
        if others:
            raise InputError(f"{', '.join(others)} set the embedded model; the colorizer here is "
                             f"{options.colorizer.name!r} (set its options in a --config file)")
        c = options.colorizer.options
        if not hasattr(c, "weights"):
            raise InputError(f"--model: the colorizer {options.colorizer.name!r} takes no weights")
        return replace(options, colorizer=Choice(options.colorizer.name, replace(c, weights=str(given["model"]))))
    m = options.colorizer.options
    sampler = replace(m.sampler, **{k: given[k] for k in ("steps", "temperature") if given[k] is not None})
    m = replace(m, sampler=sampler, **({"saturation": given["saturation"]} if given["saturation"] is not None else {}))
    if given["model"] is not None:
        m = replace(m, weights=str(given["model"]))
        if options.fill.name == "model":
            f = options.fill.options
            options = replace(options, fill=Choice("model", replace(f, model=replace(f.model, weights=str(given["model"])))))
    return replace(options, colorizer=Choice("model", m))


@app.command()
@_handle_errors
def colorize(
    inputs: Annotated[list[Path], typer.Argument(
        help="Video file, directory of frames, or image; several (or a quoted glob) colorize a batch into the -o folder.",
        metavar="INPUT...")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Video file (.mp4 .mov .mkv .avi), image, or directory; a folder for a batch.")],
    config: Annotated[
        Optional[Path], typer.Option("--config", "-c", help="Run configuration (TOML; chromaflow config prints one). Flags override it.")
    ] = None,
    reference: Annotated[
        Optional[list[Path]], typer.Option("--reference", help="Color image; repeatable.")
    ] = None,
    reference_frame: Annotated[
        Optional[list[int]],
        typer.Option("--reference-frame", help="Frame index the matching --reference is the color version of."),
    ] = None,
    palette: Annotated[
        Optional[str], typer.Option(help="Colors: hex or names ('#aa3311,#2040ff' or 'rust, navy, sand'), auto, tags, or an image or video path.")
    ] = None,
    per_shot_palette: Annotated[
        bool, typer.Option("--per-shot-palette", help="With --palette tags: each shot gets the palette of its own content.")
    ] = False,
    prompt: Annotated[Optional[str], typer.Option(help="Text describing the colors.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed: same input, options and seed give the same output (default 0).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
    codec: Annotated[
        Optional[str], typer.Option(help="Video codec: h264 (default; plays everywhere), h265, prores (.mov), ffv1 (.mkv).")
    ] = None,
    crf: Annotated[
        Optional[int], typer.Option(min=0, max=51, help="h264/h265 quality, lower is better (default 18; 0 = lossless).")
    ] = None,
    lossless: Annotated[
        Optional[bool], typer.Option("--lossless/--no-lossless", help="Keep the gray exactly (h264/h265 4:4:4; ffv1 always).",
                                     show_default=False)
    ] = None,
    pix_fmt: Annotated[
        Optional[str], typer.Option(help="Pixel format of a video output (default: the codec's, e.g. yuv420p).")
    ] = None,
    fps: Annotated[Optional[float], typer.Option(help="Frame rate when the input is a frame directory (default 25).")] = None,
    keyframe: Annotated[
        Optional[list[int]], typer.Option("--keyframe", help="Frame index that must be a keyframe; repeatable.")
    ] = None,
    colorizer: Annotated[
        Optional[str], typer.Option(help="Keyframe colorizer backend (default: model, the embedded one; see chromaflow backends).")
    ] = None,
    fill: Annotated[
        Optional[str], typer.Option(help="Fill step for regions propagation cannot colour: levin (default), model, ...")
    ] = None,
    flow: Annotated[
        Optional[str], typer.Option(help="Optical flow: dis (default), dis:fast, dis:ultrafast, a RAFT checkpoint (.pth), or a backend name.")
    ] = None,
    grounder: Annotated[
        Optional[str], typer.Option(help="Prompt grounder backend (default: cam).")
    ] = None,
    device: Annotated[
        Optional[str], typer.Option(help="Torch device: auto (default), cpu, cuda, cuda:N, mps.")
    ] = None,
    threads: Annotated[Optional[int], typer.Option(min=0, help="Torch CPU threads (0: one per core).")] = None,
    model_dir: Annotated[
        Optional[list[Path]], typer.Option("--model-dir", help="Folder of downloaded model files (a mirror); repeatable.")
    ] = None,
    work_size: Annotated[
        Optional[int], typer.Option(min=64, max=4096, help="Longer side of the working resolution (default 384).")
    ] = None,
    skin_prior: Annotated[
        Optional[float], typer.Option(min=0.0, max=1.0, help="Pull faces' skin at automatic keyframes this share of the way to "
                                      "a plausible skin colour (0.5 measured; needs chromaflow[grounding]; default 0: off).")
    ] = None,
    model: Annotated[
        Optional[Path], typer.Option(help="Colorizer weights: the embedded model's .safetensors, or for ddcolor / "
                                          "siggraph17 / eccv16 the publisher's .pth or a model name (chromaflow models list).")
    ] = None,
    steps: Annotated[Optional[int], typer.Option(min=1, max=100, help="Diffusion sampling steps (default 12).")] = None,
    temperature: Annotated[
        Optional[float],
        typer.Option(min=0.05, max=1.0, help="Sampling temperature: lower is more restrained, higher more varied."),
    ] = None,
    saturation: Annotated[
        Optional[float], typer.Option(min=0.0, max=4.0, help="Gain on the model's predicted chroma (default: the model card's).")
    ] = None,
    sd_model: Annotated[
        Optional[str], typer.Option(help="Stable Diffusion for --colorizer sd / --fill sd: diffusers folder, "
                                         ".safetensors, or hub id.")
    ] = None,
    controlnet: Annotated[
        Optional[str], typer.Option(help="ControlNet on the gray frame for the sd backends (folder, file, hub id).")
    ] = None,
    save_masks: Annotated[
        Optional[Path], typer.Option(help="Folder for the prompt's object masks and hints per grounded frame.")
    ] = None,
    frames: Annotated[
        Optional[str], typer.Option(help="Colorize only frames START:END (END excluded), as a full run colors them.")
    ] = None,
    preview: Annotated[
        bool, typer.Option("--preview", help="Color only the keyframes: write a contact sheet (gray | color) and the palette.")
    ] = False,
    work_dir: Annotated[
        Optional[Path], typer.Option(help="Work folder of finished shots (default: hidden beside the output).")
    ] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start afresh: ignore the finished shots of an interrupted run.")] = False,
    allow_partial: Annotated[
        bool, typer.Option("--allow-partial", help="Colorize the frames of a truncated or damaged input that decode (else an error).")
    ] = False,
    executor: Annotated[
        str, typer.Option(help="Where shots are colored: inprocess (default), pool (local processes), ray.")
    ] = "inprocess",
    workers: Annotated[
        Optional[int], typer.Option(min=1, help="Processes of the pool / CPUs of a local Ray instance (default: all).")
    ] = None,
    ray: Annotated[
        Optional[str], typer.Option("--ray", help="Ray cluster address (HOST:6379, ray://HOST:10001, auto).")
    ] = None,
    progress: Annotated[
        str, typer.Option(help="auto (a bar on a terminal, log lines otherwise), bar, log or none.")
    ] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
) -> None:
    """Colorize INPUT into OUTPUT, keeping its frames, timing, audio and gray levels.

    A long run that is interrupted (Ctrl-C, SIGTERM, a crash) keeps its finished shots:
    the same command again resumes there.
    """
    _setup_logging(quiet)
    from dataclasses import replace

    from chromaflow.pipeline.colorize import parse_frame_range
    from chromaflow.progress import PROGRESS_MODES
    from chromaflow.store import configure_store

    if fps is not None and fps <= 0:
        raise InputError("--fps must be positive")
    if progress not in PROGRESS_MODES:
        raise InputError(f"--progress {progress!r}: use one of {', '.join(PROGRESS_MODES)}")
    configure_store(model_dir or ())
    flags = dict(locals())
    options = _options_from_flags(config, flags)
    options = replace(
        options, overwrite=overwrite, save_masks=save_masks, progress="none" if quiet else progress,
        frames=parse_frame_range(frames) if frames else None, work_dir=work_dir, fresh=fresh,
        executor=executor, workers=workers, ray_address=ray, allow_partial=allow_partial,
    )
    batch = _batch_inputs(inputs)
    if batch is None:
        _colorize_one(inputs[0], output, options, preview)
    else:
        _colorize_batch(batch, output, options, preview)


def _batch_inputs(inputs: list[Path]) -> list[Path] | None:
    """The inputs of a batch (globs expanded, sorted), or ``None`` for a single input."""
    import glob

    expanded: list[Path] = []
    for p in inputs:
        text = str(p)
        if any(c in text for c in "*?[") and not p.exists():
            hits = sorted(glob.glob(text))
            if not hits:
                raise InputError(f"{text}: no file matches")
            expanded.extend(Path(h) for h in hits)
        else:
            expanded.append(p)
    if len(inputs) == 1 and len(expanded) == 1 and expanded[0] == inputs[0]:
        return None
    return expanded


def _colorize_one(input: Path, output: Path, options, preview: bool):
    from chromaflow.pipeline import colorize as run
    from chromaflow.pipeline.preview import preview as run_preview

    log = logging.getLogger("chromaflow")
    if preview:
        result = run_preview(input, output, options)
        log.info("wrote %s (%d keyframes of %d shots in %.1f s)%s", result.sheet, result.keyframes, result.shots,
                 result.seconds, f"; palette {result.palette}" if result.palette else "")
        return result
    result = run(input, output, options)
    if result.frames == 1:
        log.info("wrote %s in %.1f s", result.output, result.seconds)
    else:
        from chromaflow.progress import rate

        log.info("wrote %s: %d frames in %.1f s (%s)", result.output, result.frames, result.seconds,
                 rate(result.fps))
    return result


def _colorize_batch(inputs: list[Path], folder: Path, options, preview: bool) -> None:
    """Colorize each input into ``folder`` (one status line each); exit 1 if any failed."""
    from chromaflow.io.sink import IMAGE_EXTENSIONS, VIDEO_OUTPUT_EXTENSIONS

    if folder.exists() and not folder.is_dir():
        raise InputError(f"-o {folder}: a batch of {len(inputs)} inputs goes into a folder, and this is a file")
    targets = {}
    for path in inputs:
        ext = path.suffix.lower()
        if path.is_file() and ext in IMAGE_EXTENSIONS:
            name = path.name  # an image stays an image
        elif ext in VIDEO_OUTPUT_EXTENSIONS:
            name = path.name
        else:  # a frame folder, or a video chromaflow cannot write in its own container
            name = path.stem + ".mp4" if path.is_file() else path.name + ".mp4"
        if name in targets.values():
            raise InputError(f"two inputs would write {folder / name} ({path} and another); colorize them "
                             "into separate folders")
        targets[path] = name
    folder.mkdir(parents=True, exist_ok=True)
    failed = 0
    log = logging.getLogger("chromaflow")
    level = log.level
    for k, path in enumerate(inputs, 1):
        target = folder / targets[path]
        try:
            log.setLevel(logging.WARNING)  # one status line per file; warnings and errors still show
            result = _colorize_one(path, target, options, preview)
            what = (f"{result.frames} frames in {result.seconds:.1f} s" if not preview
                    else f"preview {result.sheet.name}")
            typer.echo(f"[{k}/{len(inputs)}] {path}: ok -> {target if not preview else result.sheet} ({what})",
                       err=True)
        except ChromaflowError as exc:
            failed += 1
            typer.echo(f"[{k}/{len(inputs)}] {path}: failed: {exc}", err=True)
        finally:
            log.setLevel(level)
    typer.echo(f"chromaflow: {len(inputs) - failed} of {len(inputs)} done" + (f", {failed} failed" if failed else ""),
               err=True)
    if failed:
        raise typer.Exit(1)


@app.command("config")
@_handle_errors
def config_(
    config: Annotated[
        Optional[Path], typer.Option("--config", "-c", help="Start from this file instead of the defaults.")
    ] = None,
) -> None:
    """Print the full run configuration (TOML) with every option's default and meaning.

    Save it (chromaflow config > run.toml), edit it, and use it with chromaflow colorize --config run.toml.
    """
    from chromaflow.pipeline import ColorizeOptions, config_to_toml, load_config

    options = load_config(config) if config is not None else ColorizeOptions()
    header = ("chromaflow run configuration. Use: chromaflow colorize INPUT -o OUTPUT --config THIS_FILE\n"
              "Flags given on the command line override it. Each component's options sit under its kind,\n"
              "in a table named after the backend; the other backends' tables are commented out.")
    typer.echo(config_to_toml(options, header=header), nl=False)


@app.command("backends")
@_handle_errors
def backends_() -> None:
    """List every backend (colorizers, fill steps, flows, grounders): whether it can run here, and why not."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from chromaflow import registry

    table = Table("kind", "name", "usable here", "description", box=None, pad_edge=False)
    for b in registry.backends():
        reason = b.unavailable()
        usable = "yes" if reason is None else f"no: {reason}"
        desc = b.description + (f" [licence: {b.licence}]" if b.licence else "")
        table.add_row(b.kind, b.name, escape(usable), escape(desc))
    Console(width=max(120, _terminal_width())).print(table)


def _terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((120, 24)).columns


models_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                         help="The model store: named pretrained files, their sources and checksums.")
app.add_typer(models_app, name="models")


def _store(model_dir: list[Path] | None):
    from chromaflow.store import configure_store

    return configure_store(model_dir or ())


ModelDirOption = Annotated[
    Optional[list[Path]], typer.Option("--model-dir", help="Folder of model files (a mirror), searched first; repeatable.")
]


@models_app.command("list")
@_handle_errors
def models_list(model_dir: ModelDirOption = None) -> None:
    """Every named model file: where it is found here (or not), its size, licence and what uses it."""
    from rich.console import Console
    from rich.table import Table

    store = _store(model_dir)
    table = Table("name", "here", "size", "licence", "used by", box=None, pad_edge=False)
    for name, entry in sorted(store.manifest.items()):
        path = store.find(name)
        size = f"{entry.size / 1e6:.1f} MB" if entry.size else "?"
        table.add_row(name, str(path) if path else "missing", size, entry.licence, entry.used_by)
    Console(width=max(120, _terminal_width())).print(table)
    where = ", ".join(str(m) for m in store.mirrors) or "none"
    typer.echo(f"mirrors: {where}; cache: {store.cache}")


@models_app.command("fetch")
@_handle_errors
def models_fetch(
    names: Annotated[list[str], typer.Argument(help="Model names (chromaflow models list), or 'all'.")],
    model_dir: ModelDirOption = None,
    force: Annotated[bool, typer.Option(help="Download again even if a verified copy is here.")] = False,
) -> None:
    """Download model files into the cache (resuming a partial download) and verify their sha256."""
    _setup_logging()
    store = _store(model_dir)
    wanted = sorted(store.manifest) if names == ["all"] else names
    for name in wanted:
        path = store.fetch(name, force=force)
        typer.echo(f"{name}: {path} ({store.fetched_state(name, path)})")  # fetch checked it: no second hash


@models_app.command("verify")
@_handle_errors
def models_verify(
    names: Annotated[Optional[list[str]], typer.Argument(help="Model names (default: all).")] = None,
    model_dir: ModelDirOption = None,
) -> None:
    """Check the sha256 of every model file found here; exits 1 if one is corrupt."""
    store = _store(model_dir)
    bad = 0
    for status in store.verify(names or None):
        where = f" {status.path}" if status.path else ""
        detail = f" ({status.detail})" if status.detail else ""
        typer.echo(f"{status.entry.name}: {status.state}{where}{detail}")
        bad += status.state not in ("verified", "unverified", "missing")
    if bad:
        raise typer.Exit(1)


@app.command("eval")
@_handle_errors
def eval_(
    pred: Annotated[Path, typer.Argument(help="Predicted video, frame directory, or directory of clips.")],
    gt: Annotated[Path, typer.Argument(help="Ground truth of the same kind.")],
    json_file: Annotated[Optional[Path], typer.Option("--json", help="Write every number to this JSON file.")] = None,
    lpips: Annotated[bool, typer.Option(help="Also compute LPIPS (AlexNet; weights from the model store: lpips_alexnet).")] = False,
) -> None:
    """Compare PRED with GT: PSNR, SSIM, colorfulness, CDC, warping error (and LPIPS)."""
    _setup_logging()
    from chromaflow.bench.evaluate import evaluate_paths

    result = evaluate_paths(pred, gt, lpips=lpips)
    _print_metrics(result)
    if json_file is not None:
        tmp = json_file.with_name(f".{json_file.name}.tmp")
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(json_file)


def _print_metrics(result: dict) -> None:
    """The metrics: a row per video (and the mean) where that fits the terminal, else a row per metric with
    the videos as columns, as many per table as fit; no value is ever cut."""
    from rich.console import Console
    from rich.table import Column, Table

    console = Console()
    names = list(result["mean"])
    rows = [(video, [f"{res['video'].get(n, float('nan')):.5g}" for n in names])
            for video, res in result["videos"].items()]
    if len(rows) > 1:
        rows.append(("mean", [f"{result['mean'][n]:.5g}" for n in names]))

    def fits(widths: list[int]) -> bool:  # rich's default box: a border and two spaces around each column
        return sum(widths) + 3 * len(widths) + 1 <= console.width

    if fits([max(5, *(len(r[0]) for r in rows))] + [max(len(n), *(len(r[1][i]) for r in rows))
                                                    for i, n in enumerate(names)]):
        table = Table("video", *names)
        for k, (video, values) in enumerate(rows):
            table.add_row(video, *values, style="bold" if len(rows) > 1 and k == len(rows) - 1 else None)
        console.print(table)
        return
    first = [max(6, *(len(n) for n in names))]
    i = 0
    while i < len(rows):
        chunk = rows[i : i + 1]
        while i + len(chunk) < len(rows) and fits(first + [max(8, *(len(v) for v in r[1]))
                                                           for r in rows[i : i + len(chunk) + 1]]):
            chunk = rows[i : i + len(chunk) + 1]
        table = Table("metric", *[Column(video, overflow="fold", min_width=max(len(v) for v in values))
                                  for video, values in chunk])
        for k, n in enumerate(names):
            table.add_row(n, *[values[k] for _, values in chunk])
        console.print(table)
        i += len(chunk)


@app.command()
@_handle_errors
def bench(
    clips_dir: Annotated[Path, typer.Argument(help="Directory of color clips (videos or frame directories).")],
    modes: Annotated[
        Optional[list[str]], typer.Option("--modes", help="Comma-separated: auto, exemplar, palette, prompt, exemplar-warp, exemplar-forward, exemplar-modelfill (gray always runs).")
    ] = None,
    prompts: Annotated[
        Optional[Path], typer.Option(help="Prompts file (TOML, see benchmarks/prompts.toml): the prompt mode's prompts and the boxes where adherence is measured.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Where bench.md, bench.json and sheets/ go.")] = Path("bench_out"),
    max_frames: Annotated[Optional[int], typer.Option(min=1, help="Use only the first N frames of each clip.")] = None,
    clip: Annotated[Optional[list[str]], typer.Option("--clip", help="Only these clips (by name); repeatable.")] = None,
    lpips: Annotated[bool, typer.Option(help="Also compute LPIPS (AlexNet).")] = False,
    seed: Annotated[int, typer.Option(help="Seed for every mode.")] = 0,
    jobs: Annotated[int, typer.Option(min=1, help="Jobs at once, each in its own process.")] = 1,
    model: Annotated[
        Optional[Path], typer.Option(help="Model weights (.safetensors) instead of the shipped model.")
    ] = None,
    config: Annotated[
        Optional[Path], typer.Option(help="Settings TOML (as colorize --config) every mode starts from.")
    ] = None,
) -> None:
    """Benchmark modes on every clip of CLIPS_DIR (ground truth = the clip itself)."""
    _setup_logging()
    from chromaflow.bench.runner import BenchOptions, parse_modes, run_bench

    options = BenchOptions(
        modes=parse_modes(modes or ["auto,exemplar,palette"]),
        max_frames=max_frames,
        lpips=lpips,
        seed=seed,
        clips=tuple(clip or ()),
        jobs=jobs,
        model=str(model) if model else None,
        prompts=prompts,
        config=config,
    )
    if config is not None:
        from chromaflow.pipeline.options import load_config

        load_config(config)  # a bad file is one line here, not an error in every job
    run_bench(clips_dir, out, options)
    typer.echo((out / "bench.md").read_text())


@app.command()
@_handle_errors
def palette(
    spec: Annotated[str, typer.Argument(help="Hex colors or color names, 'auto', 'tags', or an image, video or frame directory.")],
    video: Annotated[
        Optional[Path], typer.Option("--video", help="With 'tags': the video whose content gives the palette.")
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Swatch PNG to write.")] = Path("palette.png"),
    seed: Annotated[int, typer.Option(help="Seed (for 'auto' and k-means).")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing swatch.")] = False,
) -> None:
    """Print the palette SPEC stands for and write a swatch, to check it before a long run."""
    _setup_logging()
    from chromaflow.guidance.palette import palette_swatch, parse_palette_spec
    from chromaflow.io.inspection import write_png
    from chromaflow.io.sink import check_output_path

    out = check_output_path(output, overwrite)
    if out.suffix.lower() != ".png":
        raise InputError(f"the swatch is a PNG image: {out} has another extension")
    if spec.strip() == "tags" and video is None:
        raise InputError("'tags' reads a video's content: add --video PATH")
    pal = parse_palette_spec(spec, seed=seed, video=video)
    typer.echo(",".join(pal.hex()))
    write_png(out, palette_swatch(pal))
    logging.getLogger("chromaflow").info("wrote %s; use it with --palette \"%s\"", out, ",".join(pal.hex()))


@app.command()
@_handle_errors
def train(
    out: Annotated[Path, typer.Argument(help="Run folder (log, metrics, checkpoint, model.safetensors).")],
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML training config (see configs/).")
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in OUT from its checkpoint.")] = False,
    stop_at: Annotated[
        int | None, typer.Option(help="Pause after this step (checkpoint written; continue with --resume).")
    ] = None,
    max_minutes: Annotated[
        float | None,
        typer.Option(help="Pause the same way once this many minutes have passed (a machine lent for a time).",
                     min=0),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")] = False,
) -> None:
    """Train the embedded colorization model (diffusion or the regression baseline) on photos."""
    _setup_logging(quiet)
    from chromaflow.training.config import load_config
    from chromaflow.training.train import train as run_training

    if config is None and not resume:
        raise InputError("give --config FILE to start a run, or --resume to continue one")
    cfg = load_config(config) if config is not None else None
    weights = run_training(cfg, out, resume=resume, quiet=quiet, stop_at=stop_at, max_minutes=max_minutes,
                           echo=(lambda _m: None) if quiet else typer.echo)
    if weights is not None:
        logging.getLogger("chromaflow").info("weights: %s", weights)


@app.command()
@_handle_errors
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the colorized sample.")] = Path(
        "chromaflow_demo.mp4"
    ),
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
) -> None:
    """Colorize the sample clip that ships with chromaflow (see chromaflow/data/README.md)."""
    _setup_logging()
    from chromaflow.data import sample_clip, sample_reference
    from chromaflow.pipeline import ColorizeOptions, ReferenceSpec
    from chromaflow.pipeline import colorize as run

    ref_path, ref_frame = sample_reference()
    logging.getLogger("chromaflow").info(
        "sample: %s, reference: %s (color version of frame %d)", sample_clip().name, ref_path.name, ref_frame
    )
    options = ColorizeOptions(references=(ReferenceSpec(ref_path, ref_frame),), overwrite=overwrite)
    result = run(sample_clip(), output, options)
    from chromaflow.progress import rate

    logging.getLogger("chromaflow").info(
        "wrote %s: %d frames in %.1f s (%s)", result.output, result.frames, result.seconds, rate(result.fps)
    )


@app.command()
@_handle_errors
def ui(
    host: Annotated[str, typer.Option(help="Address to listen on; other than 127.0.0.1 the app is open to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 7860,
    config: Annotated[
        Optional[Path], typer.Option("--config", "-c", help="Run configuration every job starts from (TOML; chromaflow config).")
    ] = None,
    max_upload_mb: Annotated[float, typer.Option(min=1, help="Largest upload, in MB.")] = 500.0,
    max_seconds: Annotated[float, typer.Option(min=1, help="Longest input, in seconds of video.")] = 600.0,
    keep_minutes: Annotated[float, typer.Option(min=1, help="How long a finished job's files stay for download.")] = 60.0,
    model_dir: Annotated[
        Optional[list[Path]], typer.Option("--model-dir", help="Folder of downloaded model files (a mirror); repeatable.")
    ] = None,
) -> None:
    """Colorize in a web browser: upload, preview the keyframes, colorize, compare and download.

    Needs Gradio (pip install "chromaflow[ui]"). Jobs run one at a time; each has its own temporary folder,
    removed afterwards.
    """
    _setup_logging()
    import ipaddress

    from chromaflow.pipeline import ColorizeOptions, load_config
    from chromaflow.store import configure_store
    from chromaflow.ui.jobs import Limits

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        logging.getLogger("chromaflow").warning(
            "listening on %s: anyone who can reach this machine can upload files and use its CPU or GPU", host)
    configure_store(model_dir or ())
    base = load_config(config) if config is not None else ColorizeOptions()
    from chromaflow.ui.app import serve

    serve(host, port, Limits(max_upload_mb, max_seconds, keep_minutes=keep_minutes), base)


def _stop_on_signal(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    """Console-script entry point: SIGTERM and SIGHUP stop a run like Ctrl-C (finished shots are kept)."""
    import signal

    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _stop_on_signal)
    app()


if __name__ == "__main__":
    main()

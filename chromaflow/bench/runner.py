"""``chromaflow bench``: run modes over a folder of clips and report every metric.

Each (clip, mode) job runs in a fresh process so its peak memory (maximum
resident set size, which includes Python, the libraries and metric
computation) is measured on its own.  Seconds per frame count colorization
only (decoding the input, converting to gray, colorizing, composing), not the
metrics.  Outputs: ``bench.md`` (tables), ``bench.json`` (every number,
per-frame values included) and ``sheets/<clip>.png`` (gray | each mode |
ground truth at a few frames).
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import queue as queue_module
import resource
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from chromaflow.bench.evaluate import list_clips
from chromaflow.bench.modes import MODES, conditions_for_mode, options_for_mode
from chromaflow.bench.prompts import box_adherence, load_prompts
from chromaflow.color.lab import rgb_to_gray
from chromaflow.errors import ChromaflowError, InputError
from chromaflow.io.naming import natural_key
from chromaflow.io.source import Frame, FrameSource, open_source
from chromaflow.metrics.accumulate import VideoMetrics, mean_over_videos

log = logging.getLogger("chromaflow")

SHEET_FRAMES = 4
SHEET_WIDTH = 320


@dataclass(frozen=True)
class BenchOptions:
    """Options of a benchmark run.

    Attributes:
        modes: modes to run besides the ``gray`` calibration row (always run).
        max_frames: use only the first N frames of each clip (``None``: all).
        lpips: also compute LPIPS (AlexNet).
        flow_max_side: working resolution of the warping-error flow.
        seed: seed passed to every mode.
        clips: only these clips (by name); empty: all.
        jobs: jobs run at once (each in its own process); seconds per frame
            are then measured under that much contention.
        model: weights (``.safetensors``) of the embedded model instead of the shipped ones.
        prompts: a prompts file (:mod:`chromaflow.bench.prompts`): the
            ``prompt`` mode's prompts, and boxes where every mode's prompt
            adherence is measured; ``None``: no prompt mode, no adherence.
        config: a run TOML (as ``chromaflow colorize --config``) that every
            mode starts from (:func:`~chromaflow.bench.modes.options_for_mode`), or ``None``.
    """

    modes: tuple[str, ...] = ("auto", "exemplar", "palette")
    max_frames: int | None = None
    lpips: bool = False
    flow_max_side: int | None = 480
    seed: int = 0
    clips: tuple[str, ...] = field(default_factory=tuple)
    jobs: int = 1
    model: str | None = None
    prompts: Path | None = None
    config: Path | None = None


class GrayInput(FrameSource):
    """The gray version (OpenCV RGB2GRAY) of a ground-truth source, optionally truncated."""

    def __init__(self, gt: FrameSource, max_frames: int | None) -> None:
        self._gt = gt
        n = gt.info.n_frames if max_frames is None else min(max_frames, gt.info.n_frames)
        self.info = replace(gt.info, n_frames=n, audio_streams=0)

    def __iter__(self) -> Iterator[Frame]:
        for frame in self._gt:
            if frame.index >= self.info.n_frames:
                break
            gray = rgb_to_gray(frame.rgb)
            yield Frame(frame.index, np.repeat(gray[..., None], 3, axis=2), frame.pts)


def run_job(clip: Path, mode: str, options: BenchOptions) -> dict[str, Any]:
    """Colorize one clip in one mode and measure it (runs in a child process)."""
    from chromaflow.pipeline.colorize import build_engine

    lpips_net = None
    if options.lpips:
        from chromaflow.metrics.lpips import load_lpips_alex

        lpips_net = load_lpips_alex()
    with open_source(clip) as gt_source:
        source = GrayInput(gt_source, options.max_frames)
        n = source.info.n_frames
        sheet_idx = _sheet_indices(n)
        first_gt = next(iter(gt_source)).rgb
        spec = load_prompts(options.prompts).get(clip.stem) if options.prompts is not None else None
        conditions = conditions_for_mode(mode, first_gt, options.seed, spec.prompt if spec else None)
        boxes_at: dict[int, list] = {}
        for box in spec.boxes if spec else ():
            boxes_at.setdefault(box.frame, []).append(box)
        adherence: list[dict] = []
        metrics = VideoMetrics(lpips=lpips_net, flow_max_side=options.flow_max_side)
        samples: dict[int, dict[str, np.ndarray]] = {}
        colorize_seconds = 0.0
        if mode == "gray":
            frames: Iterator[tuple[Frame, np.ndarray]] = ((f, f.rgb) for f in source)
            name = "gray"
        else:
            engine = build_engine(options_for_mode(mode, options.model, options.seed, options.config), conditions)
            name = engine.colorizer.name if engine.colorizer is not None else "references"
            frames = engine.run(source, conditions)
        gt_frames = iter(gt_source)
        count = 0
        while True:
            t0 = time.perf_counter()
            item = next(frames, None)
            colorize_seconds += time.perf_counter() - t0
            if item is None:
                break
            frame, rgb = item
            gt = next(gt_frames)
            if gt.index != frame.index:
                raise RuntimeError(f"frame order broken: got {frame.index}, expected {gt.index}")
            metrics.update(rgb, gt.rgb)
            for box in boxes_at.get(frame.index, ()):
                adherence.append(box_adherence(rgb, gt.rgb, box, spec.named[box.object]))
            if frame.index in sheet_idx:
                samples[frame.index] = {"gray": _thumb(frame.rgb), "result": _thumb(rgb), "gt": _thumb(gt.rgb)}
            count += 1
    result = metrics.result()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {
        "clip": clip.stem,
        "mode": mode,
        "colorizer": name,
        "frames": count,
        "width": source.info.width,
        "height": source.info.height,
        "seconds_per_frame": colorize_seconds / max(count, 1),
        "fps": count / colorize_seconds if colorize_seconds > 0 else math.inf,
        "peak_memory_mb": peak_mb,
        "video": result["video"],
        "per_frame": result["per_frame"],
        "adherence": adherence,
        "samples": samples,
    }


def _job_entry(queue: mp.Queue, clip: Path, mode: str, options: BenchOptions) -> None:
    logging.basicConfig(level=logging.ERROR)
    try:
        queue.put(("ok", run_job(clip, mode, options)))
    except ChromaflowError as exc:
        queue.put(("unavailable", str(exc)))
    except Exception as exc:  # noqa: BLE001 - reported in the table, the run goes on
        queue.put(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def run_isolated(clip: Path, mode: str, options: BenchOptions) -> tuple[str, Any]:
    """Run :func:`run_job` in a fresh process; returns ``(status, result or message)``."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_job_entry, args=(queue, clip, mode, options))
    proc.start()
    try:
        while True:
            try:
                status, payload = queue.get(timeout=0.5)
                break
            except queue_module.Empty:
                if proc.is_alive():
                    continue
                # The child is gone: take a result it put just before exiting, if any;
                # a child killed (out of memory, a crash in native code) put none.
                try:
                    status, payload = queue.get(timeout=1.0)
                except queue_module.Empty:
                    status, payload = "error", f"the job process died (exit code {proc.exitcode}) without a result"
                break
    finally:
        proc.join()
    return status, payload


def run_bench(clips_dir: str | Path, out_dir: str | Path, options: BenchOptions) -> dict[str, Any]:
    """Benchmark every clip of ``clips_dir``; writes ``bench.md``, ``bench.json`` and sheets to ``out_dir``."""
    clips_dir, out_dir = Path(clips_dir), Path(out_dir)
    if not clips_dir.is_dir():
        raise InputError(f"not a directory: {clips_dir}")
    clips = list_clips(clips_dir)
    if options.clips:
        clips = [c for c in clips if c.stem in options.clips]
    if not clips:
        raise InputError(f"no clips (video files or frame directories) in {clips_dir}")
    for mode in options.modes:
        if mode not in MODES:
            raise InputError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    modes = ["gray"] + [m for m in options.modes if m != "gray"]
    prompted: set[str] = set()
    if options.prompts is not None:
        prompted = set(load_prompts(options.prompts))
    elif "prompt" in modes:
        raise InputError("the prompt mode needs a prompts file: --prompts FILE (see benchmarks/prompts.toml)")
    (out_dir / "sheets").mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"options": _options_dict(options), "clips": {}, "unavailable": {}, "errors": {}}
    from chromaflow.progress import track

    jobs = [(c, m) for c in clips for m in modes if m != "prompt" or c.stem in prompted]
    if "prompt" in modes and not any(m == "prompt" for _, m in jobs):
        raise InputError(f"no clip of {clips_dir} has a prompt in {options.prompts}")
    sheets: dict[str, dict[str, dict]] = {}
    from concurrent.futures import ThreadPoolExecutor, as_completed

    # Each job runs in its own process (run_isolated); threads only wait for them.
    with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
        futures = {pool.submit(run_isolated, clip, mode, options): (clip, mode) for clip, mode in jobs}
        for future in track(as_completed(futures), len(jobs), "benchmark"):
            clip, mode = futures[future]
            status, payload = future.result()
            log.info("%s / %s: %s", clip.name, mode, status)
            if status == "ok":
                sheets.setdefault(clip.stem, {})[mode] = payload.pop("samples")
                report["clips"].setdefault(clip.stem, {})[mode] = payload
            elif status == "unavailable":
                report["unavailable"][mode] = payload
            else:
                report["errors"].setdefault(clip.stem, {})[mode] = payload
                log.error("%s / %s failed: %s", clip.name, mode, payload.splitlines()[0])
            _write_report(out_dir, report)  # partial results survive an interrupted run
    for clip_name, per_mode in sheets.items():
        write_contact_sheet(out_dir / "sheets" / f"{clip_name}.png", per_mode)
    _write_report(out_dir, report)
    return report


def _write_report(out_dir: Path, report: dict[str, Any]) -> None:
    report["clips"] = {k: report["clips"][k] for k in sorted(report["clips"], key=natural_key)}
    report["summary"] = summarize(report)
    report["adherence"] = summarize_adherence(report)
    _write_atomic(out_dir / "bench.json", json.dumps(report, indent=1, default=_json_default))
    _write_atomic(out_dir / "bench.md", render_markdown(report))


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """Per mode: the mean over clips of every metric, seconds per frame and peak memory."""
    out: dict[str, Any] = {}
    modes = sorted({m for per in report["clips"].values() for m in per}, key=_mode_order)
    for mode in modes:
        rows = [per[mode] for per in report["clips"].values() if mode in per]
        mean = mean_over_videos([r["video"] for r in rows])
        frames = sum(r["frames"] for r in rows)
        seconds = sum(r["seconds_per_frame"] * r["frames"] for r in rows)
        mean["seconds_per_frame"] = seconds / max(frames, 1)
        mean["fps"] = frames / seconds if seconds > 0 else math.inf
        mean["peak_memory_mb"] = max(r["peak_memory_mb"] for r in rows)
        mean["clips"] = len(rows)
        out[mode] = mean
    return out


_COLUMNS = (
    ("psnr", "PSNR", "{:.2f}"),
    ("ssim", "SSIM", "{:.4f}"),
    ("lpips", "LPIPS", "{:.4f}"),
    ("colorfulness", "Colorful.", "{:.2f}"),
    ("cdc", "CDC", "{:.5f}"),
    ("cdc_gt", "CDC (GT)", "{:.5f}"),
    ("warp_error", "Warp err.", "{:.6f}"),
)


def summarize_adherence(report: dict[str, Any]) -> dict[str, Any]:
    """Per mode, prompt adherence averaged over every box of every clip that has boxes.

    Also, for each mode other than ``auto``: ``closer_than_auto``, how much
    closer to the named colours it brings the named objects than ``auto`` does,
    ``1 - to_named(mode) / to_named(auto)`` over the boxes both measured.
    """
    per_mode: dict[str, list[dict]] = {}
    for clip, per in report["clips"].items():
        for mode, r in per.items():
            per_mode.setdefault(mode, []).extend({**a, "clip": clip} for a in r.get("adherence", ()))
    out: dict[str, Any] = {}
    for mode, rows in per_mode.items():
        if rows:
            out[mode] = {k: float(np.mean([r[k] for r in rows])) for k in ("to_gt", "to_named", "gt_to_named")}
            out[mode]["boxes"] = len(rows)
    auto = {(r["clip"], r["frame"], r["object"]): r for r in per_mode.get("auto", [])}
    for mode, rows in per_mode.items():
        pairs = [(auto[k]["to_named"], r["to_named"]) for r in rows
                 if mode != "auto" and (k := (r["clip"], r["frame"], r["object"])) in auto]
        if pairs:
            a, m = np.mean(pairs, axis=0)
            out[mode]["closer_than_auto"] = float(1 - m / a) if a > 0 else float("nan")
    return out


def _adherence_markdown(report: dict[str, Any]) -> list[str]:
    summary = report.get("adherence") or {}
    if not summary:
        return []
    lines = ["", "## Prompt adherence", "",
             "Mean CIEDE2000 inside the hand-drawn boxes (lower is closer): to the ground truth, and to the "
             "named colour at each pixel's lightness; the ground truth's own distance to the named colour "
             "says how well the prompt describes it. Closer than auto: 1 - to named / to named (auto).", "",
             "| mode (boxes) | to ground truth | to named colour | ground truth to named | closer than auto |",
             "|---|---|---|---|---|"]
    for mode in sorted(summary, key=_mode_order):
        m = summary[mode]
        closer = f"{100 * m['closer_than_auto']:.0f} %" if "closer_than_auto" in m else "-"
        lines.append(f"| {mode} ({m['boxes']}) | {m['to_gt']:.2f} | {m['to_named']:.2f} | {m['gt_to_named']:.2f} | {closer} |")
    lines += ["", "| clip | object | frame | " + " | ".join(f"{m} to GT / to named" for m in sorted(summary, key=_mode_order)) + " |",
              "|---|---|---|" + "---|" * len(summary)]
    for clip, per in report["clips"].items():
        keys = []
        for r in per.values():
            keys += [(a["object"], a["frame"]) for a in r.get("adherence", ()) if (a["object"], a["frame"]) not in keys]
        for obj, frame in keys:
            cells = []
            for mode in sorted(summary, key=_mode_order):
                a = next((a for a in per.get(mode, {}).get("adherence", ()) if (a["object"], a["frame"]) == (obj, frame)), None)
                cells.append(f"{a['to_gt']:.1f} / {a['to_named']:.1f}" if a else "-")
            lines.append(f"| {clip} | {obj} | {frame} | " + " | ".join(cells) + " |")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """The report as markdown: a summary table per mode, then one table per clip."""
    have_lpips = bool(report["options"].get("lpips"))
    cols = [c for c in _COLUMNS if c[0] != "lpips" or have_lpips]
    head = "| " + " | ".join(["mode", *[c[1] for c in cols], "s/frame", "fps", "peak MB"]) + " |"
    sep = "|" + "---|" * (len(cols) + 4)
    lines = ["# chromaflow benchmark", "", "## Mean over clips", "", head.replace("| mode |", "| mode (clips) |"), sep]
    for mode, m in report["summary"].items():
        cells = [_fmt(m.get(k), f) for k, _, f in cols]
        lines.append(
            f"| {mode} ({m['clips']}) | "
            + " | ".join(cells)
            + f" | {m['seconds_per_frame']:.4f} | {m['fps']:.1f} | {m['peak_memory_mb']:.0f} |"
        )
    if report["unavailable"]:
        lines += ["", "Not available:"]
        lines += [f"- `{mode}`: {msg}" for mode, msg in report["unavailable"].items()]
    if report["errors"]:
        lines += ["", "Errors:"]
        for clip, per in report["errors"].items():
            lines += [f"- {clip} / {mode}: {msg.splitlines()[0]}" for mode, msg in per.items()]
    lines += _adherence_markdown(report)
    lines += ["", "## Per clip", ""]
    for clip, per in report["clips"].items():
        first = next(iter(per.values()))
        lines += [f"### {clip} ({first['width']}x{first['height']}, {first['frames']} frames)", "", head, sep]
        for mode in sorted(per, key=_mode_order):
            r = per[mode]
            cells = [_fmt(r["video"].get(k), f) for k, _, f in cols]
            lines.append(
                f"| {mode} | "
                + " | ".join(cells)
                + f" | {r['seconds_per_frame']:.4f} | {r['fps']:.1f} | {r['peak_memory_mb']:.0f} |"
            )
        lines.append("")
    lines += [
        "PSNR/SSIM/LPIPS against the original color frames; colorfulness: Hasler-Suesstrunk M(3), signed "
        "opponent channels; CDC: TCVC color distribution consistency (JS divergence, d in {1, 2, 4}); warp "
        "err.: Lai et al. 2018 on [0, 1] RGB, flow from the ground truth. s/frame and fps: colorization only. "
        "peak MB: maximum resident memory of the job's process.",
        "",
    ]
    return "\n".join(lines)


def write_contact_sheet(path: Path, per_mode: dict[str, dict[int, dict[str, np.ndarray]]]) -> None:
    """Rows: sampled frames; columns: gray | each mode | ground truth, labelled."""
    modes = sorted((m for m in per_mode if m != "gray"), key=_mode_order)
    any_mode = next(iter(per_mode.values()))
    rows = []
    for idx in sorted(any_mode):
        tiles = [_label(any_mode[idx]["gray"], f"gray #{idx}")]
        tiles += [_label(per_mode[m][idx]["result"], m) for m in modes if idx in per_mode[m]]
        tiles.append(_label(any_mode[idx]["gt"], "ground truth"))
        rows.append(np.concatenate(tiles, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    sheet = np.concatenate(rows, axis=0)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if ok:
        _write_atomic(path, buf.tobytes())


def _label(img: np.ndarray, text: str) -> np.ndarray:
    from chromaflow.io.inspection import label

    return label(img, text)


def _thumb(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = SHEET_WIDTH / w
    rgb = np.ascontiguousarray(rgb)  # engine frames hold their gray as a broadcast view
    return cv2.resize(rgb, (SHEET_WIDTH, max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _sheet_indices(n: int) -> set[int]:
    if n <= SHEET_FRAMES:
        return set(range(n))
    return {round(i * (n - 1) / (SHEET_FRAMES - 1)) for i in range(SHEET_FRAMES)}


def _mode_order(mode: str) -> int:
    return MODES.index(mode) if mode in MODES else len(MODES)


def _fmt(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def _options_dict(options: BenchOptions) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(options)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(type(obj).__name__)


def _write_atomic(path: Path, data: str | bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    if isinstance(data, str):
        tmp.write_text(data)
    else:
        tmp.write_bytes(data)
    tmp.replace(path)


def parse_modes(text: Sequence[str]) -> tuple[str, ...]:
    """``["exemplar,palette", "auto"]`` -> ``("exemplar", "palette", "auto")``."""
    modes: list[str] = []
    for item in text:
        modes += [m.strip() for m in item.split(",") if m.strip()]
    for m in modes:
        if m not in MODES:
            raise InputError(f"unknown mode {m!r}; known: {', '.join(MODES)}")
    return tuple(dict.fromkeys(modes))

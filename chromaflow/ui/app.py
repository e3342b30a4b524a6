"""The page of ``chromaflow ui``: Gradio widgets over :mod:`chromaflow.ui.jobs` and :mod:`chromaflow.ui.views`.

Gradio is the convention of this field (DeOldify, DDColor and ColorMNet ship
Gradio apps): it gives uploads, colour pickers, an image comparison slider,
streamed progress and a queue, served by one Python process that keeps the
models loaded.

Every handler takes the files Gradio stored itself (its upload folder, inside
the server's temporary root), never a path typed in a text box; work runs on
the job queue, one job at a time, and each browser session's jobs are
discarded when it starts a new one of the same kind or closes.
"""

# no "from __future__ import annotations": Gradio reads the handlers' ``gr.Request`` annotations as objects
import logging
import os
import threading
from pathlib import Path

import numpy as np

from chromaflow.errors import ChromaflowError, InputError
from chromaflow.io.naming import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from chromaflow.pipeline.options import ColorizeOptions
from chromaflow.progress import format_duration
from chromaflow.ui import views
from chromaflow.ui.jobs import (
    MODES,
    JobQueue,
    JobRequest,
    Limits,
    accept_upload,
    colorize_work,
    job_options,
    parse_frame_numbers,
    preview_work,
    stage_input,
)

log = logging.getLogger("chromaflow")

#: seconds between two status updates while a job runs
POLL_SECONDS = 0.5


class Sessions:
    """The jobs of each browser session (by Gradio's session hash): kind -> (job id, input, fps)."""

    def __init__(self, jobs: JobQueue) -> None:
        self.jobs = jobs
        self._lock = threading.Lock()
        self._by_session: dict[str, dict[str, tuple[str, Path, float | None]]] = {}

    def replace(self, session: str, kind: str, job_id: str, input: Path, fps: float | None) -> None:
        """Record the session's new job of ``kind``, discarding its previous one."""
        with self._lock:
            old = self._by_session.setdefault(session, {}).get(kind)
            self._by_session[session][kind] = (job_id, input, fps)
        if old is not None:
            self.jobs.discard(old[0])

    def get(self, session: str, kind: str) -> tuple[str, Path, float | None] | None:
        with self._lock:
            return self._by_session.get(session, {}).get(kind)

    def cancel(self, session: str) -> bool:
        with self._lock:
            ids = [v[0] for v in self._by_session.get(session, {}).values()]
        return any([self.jobs.cancel(i) for i in ids])

    def close(self, session: str) -> None:
        with self._lock:
            kinds = self._by_session.pop(session, {})
        for job_id, _, _ in kinds.values():
            self.jobs.discard(job_id)


def describe_upload(path: Path) -> str:
    """One line about an accepted upload: its size, frames, rate, duration and audio."""
    from chromaflow.io.source import open_source

    ext = path.suffix.lower()
    if ext == ".zip":
        import zipfile

        if not zipfile.is_zipfile(path):
            raise InputError(f"{path.name}: not a zip file")
        with zipfile.ZipFile(path) as zf:
            n = sum(1 for i in zf.infolist() if Path(i.filename).suffix.lower() in IMAGE_EXTENSIONS)
        return f"zip of {n} image{'s' if n != 1 else ''} (frames, in natural name order)"
    if ext not in VIDEO_EXTENSIONS and ext not in IMAGE_EXTENSIONS:
        raise InputError(f"{path.name}: upload a video, an image, or a zip of frames")
    with open_source(path) as src:
        info = src.info
    if info.kind == "image":
        return f"image {info.width}×{info.height}"
    seconds = info.n_frames / float(info.fps) if info.fps else 0.0
    audio = f"{info.audio_streams} audio stream{'s' if info.audio_streams != 1 else ''} (kept)" \
        if info.audio_streams else "no audio"
    return f"video {info.width}×{info.height}, {info.n_frames} frames at {float(info.fps):.3g} fps " \
           f"({format_duration(seconds)}), {audio}"


def build_app(jobs: JobQueue, base: ColorizeOptions | None = None):
    """The Gradio Blocks of the app (not launched).

    Args:
        jobs: the server's job queue (its components and limits).
        base: the run configuration every job starts from (``chromaflow ui --config``).
    """
    import gradio as gr

    base = (base or ColorizeOptions()).resolved()
    sessions = Sessions(jobs)
    roots = (Path(os.environ.get("GRADIO_TEMP_DIR") or _gradio_upload_folder()),)
    limits = jobs.limits

    def accepted(path) -> Path:
        return accept_upload(path, roots, limits)

    def prepare(kind, upload, mode, ref_files, ref_frames, palette_text, prompt, work_size, seed, fps):
        """Stage the upload and the references in a new job folder; the job's input and options."""
        if not upload:
            raise InputError("upload a video, a zip of frames or an image first")
        folder = jobs.new_folder(kind)
        try:
            fps = float(fps) if fps else None
            input = stage_input(accepted(upload), folder, limits, fps)
            refs = ()
            if mode == "references":
                files = [accepted(f) for f in (ref_files or [])]
                frames = parse_frame_numbers(ref_frames, len(files))
                staged = []
                for k, f in enumerate(files):
                    if f.suffix.lower() not in IMAGE_EXTENSIONS:
                        raise InputError(f"{f.name}: a reference is an image (png, jpg, tif, bmp, webp)")
                    (folder / "refs" / str(k)).mkdir(parents=True)  # one folder each: two may share a name
                    staged.append(stage_input(f, folder / "refs" / str(k), limits))
                refs = tuple(zip(staged, frames))
            pal = ",".join(views.ui_palette(palette_text).hex()) if mode == "palette" else None
            request = JobRequest(mode=mode, references=refs, palette=pal, prompt=prompt, seed=int(seed or 0),
                                 work_size=int(work_size) if work_size else None, fps=fps)
            return folder, input, job_options(base, request, folder), fps
        except BaseException:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
            raise

    def start(kind, args, request: gr.Request):
        folder, input, options, fps = prepare(kind, *args)
        work = (preview_work if kind == "preview" else colorize_work)(input, options, jobs.components)
        job = jobs.submit(kind, folder, work)
        sessions.replace(request.session_hash, kind, job.id, input, fps)
        return job

    def follow(job):
        """Status lines while ``job`` waits or runs (the first at once)."""
        yield views.status_text(job, jobs.ahead(job))
        while not job.finished.wait(POLL_SECONDS):
            yield views.status_text(job, jobs.ahead(job))

    # ---- handlers ---------------------------------------------------------------------------------------
    def on_upload(upload):
        if not upload:
            return ""
        try:
            return describe_upload(accepted(upload))
        except ChromaflowError as exc:
            return f"**error**: {exc}"

    def on_mode(mode):
        return [gr.update(visible=mode == m) for m in (*MODES[1:], "prompt")]

    def on_palette_text(text):
        if not (text or "").strip():
            return None, ""
        try:
            from chromaflow.guidance.palette import palette_swatch

            return palette_swatch(views.ui_palette(text)), ""
        except ChromaflowError as exc:
            return None, f"**error**: {exc}"

    def on_add_color(text, color):
        from chromaflow.guidance.palette import PALETTE_SIZE

        color = _hex_of(color)
        items = [t for t in (text or "").replace(",", " ").split() if t]
        if not color:
            return gr.skip(), ""
        if len(items) >= PALETTE_SIZE:
            return gr.skip(), f"**error**: at most {PALETTE_SIZE} colors: remove one first"
        return ", ".join([*items, color]), ""

    def on_palette_image(image):
        if image is None:
            return gr.skip(), ""
        try:
            return ", ".join(views.image_palette(np.asarray(image)).hex()), ""
        except ChromaflowError as exc:
            return gr.skip(), f"**error**: {exc}"

    def on_preview(upload, mode, ref_files, ref_frames, palette_text, prompt, work_size, seed, fps,
                   request: gr.Request):
        args = (upload, mode, ref_files, ref_frames, palette_text, prompt, work_size, seed, fps)
        try:
            job = start("preview", args, request)
        except ChromaflowError as exc:
            yield f"Preview: **error**: {exc}", None, []
            return
        for text in follow(job):
            yield text, gr.skip(), gr.skip()
        final = views.status_text(job, 0)
        if job.state != "done":
            yield final, None, []
            return
        r = job.result
        yield final, str(r.sheet), views.mask_overlays(r.masks)

    def on_colorize(upload, mode, ref_files, ref_frames, palette_text, prompt, work_size, seed, fps,
                    request: gr.Request):
        args = (upload, mode, ref_files, ref_frames, palette_text, prompt, work_size, seed, fps)
        empty = (None, gr.update(value=0, maximum=1, interactive=False), None, None)
        try:
            job = start("colorize", args, request)
        except ChromaflowError as exc:
            yield f"Colorize: **error**: {exc}", *empty
            return
        for text in follow(job):
            yield text, gr.skip(), gr.skip(), gr.skip(), gr.skip()
        final = views.status_text(job, 0)
        if job.state != "done":
            yield final, *empty
            return
        r = job.result
        _, input, fps = sessions.get(request.session_hash, "colorize")
        middle = r.frames // 2
        pair = views.compare_frames(input, r.output, middle, fps)
        config = str(r.config) if r.config is not None else None
        yield final, pair, gr.update(value=middle, maximum=max(1, r.frames - 1), interactive=r.frames > 1), \
            str(r.output), config

    def on_frame(index, request: gr.Request):
        entry = sessions.get(request.session_hash, "colorize")
        job = jobs.get(entry[0]) if entry else None
        if job is None or job.state != "done":
            return gr.skip()
        return views.compare_frames(entry[1], job.result.output, int(index), entry[2])

    def on_cancel(request: gr.Request):
        return "cancelling…" if sessions.cancel(request.session_hash) else gr.skip()

    def on_unload(request: gr.Request):
        sessions.close(request.session_hash)

    # ---- the page ---------------------------------------------------------------------------------------
    kinds = sorted({*VIDEO_EXTENSIONS, *IMAGE_EXTENSIONS, ".zip"})
    with gr.Blocks(title="chromaflow", analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        gr.Markdown("## chromaflow: colorize black-and-white video\n"
                    "Upload a video, a zip of frames or an image; choose where the colors come from; "
                    "**Preview** colors the keyframes in seconds, **Colorize** makes the whole video "
                    "(its audio, timing and gray levels kept).")
        with gr.Row():
            with gr.Column(scale=2):
                upload = gr.File(label="Video, zip of frames, or image", file_types=kinds, elem_id="upload")
                about = gr.Markdown(elem_id="about")
                mode = gr.Radio(list(MODES), value="automatic", label="Colors from", elem_id="mode")
                with gr.Group(visible=False) as refs_box:
                    ref_files = gr.File(label="Color reference images", file_count="multiple",
                                        file_types=sorted(IMAGE_EXTENSIONS), elem_id="refs")
                    ref_frames = gr.Textbox(label="Their frame numbers, in upload order (from 0; leave empty for "
                                                  "related photos)", placeholder="0, 120", elem_id="ref-frames")
                with gr.Group(visible=False) as palette_box:
                    palette_text = gr.Textbox(label="Palette (hex codes or color names, at most 5)",
                                              placeholder="#a8442a, navy, sand", elem_id="palette")
                    with gr.Row():
                        picker = gr.ColorPicker(value="#a8442a", label="Pick a color", elem_id="picker")
                        add_color = gr.Button("Add color", size="sm")
                    palette_image = gr.Image(label="…or take the colors of an image", type="numpy",
                                             sources=["upload"], height=160, elem_id="palette-image")
                    swatch = gr.Image(label="Swatch", interactive=False, height=90, elem_id="swatch")
                    palette_note = gr.Markdown()
                with gr.Group(visible=False) as prompt_box:
                    prompt = gr.Textbox(label="Prompt", placeholder="a red car on a gray street, blue sky",
                                        elem_id="prompt")
                with gr.Accordion("Settings", open=False):
                    work_size = gr.Slider(64, 2048, value=base.engine.work_max_side, step=32,
                                          label="Working resolution (longer side; the output keeps the input's)")
                    seed = gr.Number(value=base.seed, precision=0, label="Seed (same input, settings and seed: "
                                                                        "same colors)")
                    fps = gr.Number(value=base.fps or 25, label="Frame rate of a zip of frames")
                    gr.Markdown("The output's encoding and the backends are the server's "
                                "(`chromaflow ui --config run.toml`).")
                with gr.Row():
                    preview_btn = gr.Button("Preview keyframes", elem_id="preview-btn")
                    run_btn = gr.Button("Colorize", variant="primary", elem_id="run-btn")
                    cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel-btn")
                status = gr.Markdown(elem_id="status")
            with gr.Column(scale=3):
                sheet = gr.Image(label="Preview: gray | color of each keyframe", interactive=False,
                                 elem_id="sheet")
                masks = gr.Gallery(label="Prompt: the objects found on the keyframes", columns=3, height=220,
                                   visible=False, elem_id="masks")
                compare = gr.ImageSlider(label="Result: gray | color (drag the bar)", interactive=False,
                                         elem_id="compare")
                frame = gr.Slider(0, 1, value=0, step=1, label="Frame shown", interactive=False, elem_id="frame")
                with gr.Row():
                    result = gr.File(label="Download the result", interactive=False, elem_id="result")
                    config = gr.File(label="Its settings (chromaflow colorize --config)", interactive=False,
                                     elem_id="config")

        inputs = [upload, mode, ref_files, ref_frames, palette_text, prompt, work_size, seed, fps]
        upload.change(on_upload, upload, about, queue=False)
        mode.change(on_mode, mode, [refs_box, palette_box, prompt_box, masks], queue=False)
        palette_text.change(on_palette_text, palette_text, [swatch, palette_note], queue=False)
        add_color.click(on_add_color, [palette_text, picker], [palette_text, palette_note], queue=False)
        palette_image.change(on_palette_image, palette_image, [palette_text, palette_note])
        preview_btn.click(on_preview, inputs, [status, sheet, masks], concurrency_limit=8,
                          show_progress="minimal")
        run_btn.click(on_colorize, inputs, [status, compare, frame, result, config], concurrency_limit=8,
                      show_progress="minimal")
        frame.release(on_frame, frame, compare, concurrency_limit=4)
        cancel_btn.click(on_cancel, None, status, queue=False)
        demo.unload(on_unload)
    return demo


def _hex_of(color: str | None) -> str | None:
    """A colour picker's value (``#rrggbb``, or ``rgba(r, g, b, a)``) as ``#rrggbb``."""
    import re

    if not color:
        return None
    color = color.strip()
    if re.fullmatch(r"#[0-9a-fA-F]{6}", color):
        return color.lower()
    m = re.fullmatch(r"rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*(?:,\s*[\d.]+\s*)?\)", color)
    if m:
        return "#" + "".join(f"{min(255, round(float(v))):02x}" for v in m.groups())
    return None


def _gradio_upload_folder() -> str:
    from gradio.utils import get_upload_folder

    return get_upload_folder()


def serve(host: str = "127.0.0.1", port: int = 7860, limits: Limits | None = None,
          base: ColorizeOptions | None = None) -> None:
    """Run the app until interrupted (Ctrl-C, SIGTERM); every job's files are removed on the way out.

    Gradio stores the uploads in the server's temporary root too (``GRADIO_TEMP_DIR``), so they go with it.

    Raises:
        NotAvailableError: Gradio is not installed.
    """
    from chromaflow.errors import NotAvailableError
    from chromaflow.registry import Components
    from chromaflow.runtime import Runtime

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    base = (base or ColorizeOptions()).resolved()
    jobs = JobQueue(Components(Runtime(base.runtime)), limits)
    try:
        os.environ["GRADIO_TEMP_DIR"] = str(jobs.root / "uploads")
        try:
            import gradio  # noqa: F401
        except ImportError:
            raise NotAvailableError('chromaflow ui needs Gradio: pip install "chromaflow[ui]"') from None
        demo = build_app(jobs, base)
        demo.queue(max_size=64)
        log.info("chromaflow ui on http://%s:%d (Ctrl-C stops it; job files in %s)", host, port, jobs.root)
        demo.launch(server_name=host, server_port=port, max_file_size=int(jobs.limits.max_upload_mb * 1e6),
                    ssr_mode=False, show_error=True, quiet=True, inbrowser=False)
    finally:
        jobs.close()

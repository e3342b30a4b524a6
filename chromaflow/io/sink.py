"""Frame sinks: a video file (H.264, audio kept), a directory of PNG frames, or one image.

Sinks write to a temporary name beside the target and rename it into place in
:meth:`FrameSink.commit`; :meth:`FrameSink.abort` (or leaving a ``with`` block
by an exception) removes the temporary output, so a failed or interrupted run
never leaves a half-written file.
"""

from __future__ import annotations

import logging
import os
import shutil
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from chromaflow.errors import OutputError
from chromaflow.io.naming import IMAGE_EXTENSIONS, VIDEO_OUTPUT_EXTENSIONS
from chromaflow.io.source import SWS_ACCURATE, SourceInfo

log = logging.getLogger("chromaflow")

#: Audio codecs each container accepts unchanged; others are re-encoded to AAC.
_AUDIO_COPY_OK = {
    ".mp4": {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"},
    ".m4v": {"aac", "mp3", "alac", "ac3", "eac3"},
    ".mov": {"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_f32le"},
    ".avi": {"mp3", "ac3", "pcm_s16le", "aac"},
    ".mkv": None,  # Matroska holds every codec
}


class FrameSink:
    """Base class for outputs; use as a context manager (commit on success)."""

    def __init__(self, path: Path, overwrite: bool) -> None:
        self.path = path
        self.overwrite = overwrite
        self.frames_written = 0
        self._done = False

    def write(self, rgb: np.ndarray, pts: int, name: str | None = None) -> None:  # pragma: no cover
        """Append one ``(H, W, 3)`` ``uint8`` sRGB frame with its presentation time."""
        raise NotImplementedError

    def commit(self) -> Path:  # pragma: no cover
        raise NotImplementedError

    def abort(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def __enter__(self) -> FrameSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._done:
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class VideoFileSink(FrameSink):
    """H.264 video in mp4, mov, mkv or avi, with the audio of ``audio_from`` copied in.

    Args:
        path: output file; the container follows its extension.
        info: the source's size, frame rate and time base (kept in the output).
        audio_from: a media file whose audio streams are copied unchanged (or
            re-encoded to AAC when the container cannot hold their codec).
        crf: x264 constant rate factor.  0 (the default) is lossless 4:4:4,
            which keeps the input gray exactly but plays only in FFmpeg-based
            players (VLC, mpv, NLEs); 16 to 20 give small 4:2:0 files that
            play everywhere, with the gray within a few levels.
        preset: x264 speed preset.
        audio_offset: seconds of the input's audio to skip (a range of frames
            starts there); the audio kept is shifted to start with the video.
    """

    def __init__(
        self,
        path: Path,
        info: SourceInfo,
        overwrite: bool = False,
        audio_from: Path | None = None,
        crf: int = 0,
        preset: str = "medium",
        audio_offset: float = 0.0,
    ) -> None:
        super().__init__(path, overwrite)
        self._tmp = _temp_name(path)
        try:
            self._out = av.open(str(self._tmp), mode="w")
        except (av.error.FFmpegError, OSError) as exc:
            raise OutputError(f"cannot write {path}: {exc}") from None
        try:
            self._stream = self._add_video_stream(info, crf, preset)
            self._audio = (_AudioCopier(audio_from, self._out, path.suffix.lower(), audio_offset)
                           if audio_from else None)
        except Exception:
            self._out.close()
            _remove(self._tmp)
            raise
        self._time_base = info.time_base

    def _add_video_stream(self, info: SourceInfo, crf: int, preset: str) -> av.VideoStream:
        rate = Fraction(info.fps).limit_denominator(1001000)
        stream = self._out.add_stream("libx264", rate=rate)
        stream.width = info.width
        stream.height = info.height
        if crf == 0:
            # Lossless H.264 needs the High 4:4:4 Predictive profile anyway; full chroma
            # resolution keeps the gray of every pixel exactly (4:2:0 averaging moves it).
            stream.pix_fmt = "yuv444p"
        elif info.width % 2 or info.height % 2:
            log.warning(
                "%dx%d has an odd side: writing H.264 4:4:4 (yuv444p), which some players cannot "
                "show; write a frame directory or crop to even sizes for the widest support",
                info.width,
                info.height,
            )
            stream.pix_fmt = "yuv444p"
        else:
            stream.pix_fmt = "yuv420p"
        stream.time_base = info.time_base
        stream.codec_context.time_base = info.time_base
        cc = stream.codec_context
        cc.colorspace = 6  # SMPTE 170M (BT.601), the matrix frames are converted with
        cc.color_range = 1  # limited ("tv") range
        stream.options = {"crf": str(crf), "preset": preset}
        return stream

    def write(self, rgb: np.ndarray, pts: int, name: str | None = None) -> None:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(
            format=self._stream.pix_fmt, dst_colorspace="ITU601", interpolation=SWS_ACCURATE
        )
        frame.pts = pts
        frame.time_base = self._time_base
        for packet in self._stream.encode(frame):
            self._mux_video(packet)
        self.frames_written += 1

    def _mux_video(self, packet: av.Packet) -> None:
        if self._audio is not None and packet.dts is not None:
            self._audio.mux_until(float(packet.dts * packet.time_base))
        self._out.mux(packet)

    def commit(self) -> Path:
        try:
            for packet in self._stream.encode(None):
                self._mux_video(packet)
            if self._audio is not None:
                self._audio.finish()
            self._out.close()
        except BaseException:
            self.abort()
            raise
        self._done = True
        _replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        self._done = True
        try:
            if self._audio is not None:
                self._audio.close()
            self._out.close()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        _remove(self._tmp)


class _AudioCopier:
    """Copies the audio streams of a media file into an output container, interleaved."""

    def __init__(self, source: Path, out: av.container.OutputContainer, ext: str, offset: float = 0.0) -> None:
        self._offset = float(offset)
        self._in = av.open(str(source))
        self._out = out
        allowed = _AUDIO_COPY_OK.get(ext, set())
        self._map: dict[int, tuple[av.AudioStream, str, object]] = {}
        streams = list(self._in.streams.audio)
        for s in streams:
            name = s.codec_context.codec.canonical_name
            if allowed is None or name in allowed:
                self._map[s.index] = (out.add_stream_from_template(s), "copy", None)
            else:
                log.warning("audio codec %s cannot go into %s unchanged: re-encoding it to AAC", name, ext)
                enc = out.add_stream("aac", rate=s.rate)
                enc.layout = s.layout
                resampler = av.AudioResampler(format="fltp", layout=s.layout, rate=s.rate)
                self._map[s.index] = (enc, "aac", resampler)
        self._packets = self._in.demux(*streams) if streams else iter(())
        self._pending: av.Packet | None = None

    def mux_until(self, seconds: float) -> None:
        while True:
            if self._pending is None:
                self._pending = next(self._packets, None)
                if self._pending is None:
                    return
            pkt = self._pending
            if pkt.dts is not None and pkt.time_base is not None and float(pkt.dts * pkt.time_base) > seconds + self._offset:
                return
            self._pending = None
            if self._offset:
                if pkt.pts is None or pkt.time_base is None or float(pkt.pts * pkt.time_base) < self._offset:
                    continue  # before the range
                shift = round(self._offset / pkt.time_base)
                pkt.pts -= shift
                if pkt.dts is not None:
                    pkt.dts -= shift
            self._mux(pkt)

    def _mux(self, pkt: av.Packet) -> None:
        out_stream, mode, resampler = self._map[pkt.stream.index]
        if mode == "copy":
            if pkt.dts is None or pkt.size == 0:
                return
            pkt.stream = out_stream
            self._out.mux(pkt)
            return
        for frame in pkt.decode():
            for rf in resampler.resample(frame):
                self._out.mux(out_stream.encode(rf))

    def finish(self) -> None:
        self.mux_until(float("inf"))
        for out_stream, mode, resampler in self._map.values():
            if mode != "copy":
                for rf in resampler.resample(None):
                    self._out.mux(out_stream.encode(rf))
                self._out.mux(out_stream.encode(None))
        self.close()

    def close(self) -> None:
        self._in.close()


class FrameDirSink(FrameSink):
    """A directory of PNG frames named after the input's file stems (or frame numbers)."""

    def __init__(self, path: Path, overwrite: bool = False) -> None:
        super().__init__(path, overwrite)
        self._tmp = _temp_name(path)
        _remove(self._tmp)
        self._tmp.mkdir(parents=False)

    def write(self, rgb: np.ndarray, pts: int, name: str | None = None) -> None:
        stem = name if name else f"frame_{self.frames_written:06d}"
        target = self._tmp / f"{stem}.png"
        ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise OutputError(f"cannot encode frame {stem} as PNG")
        buf.tofile(str(target))
        self.frames_written += 1

    def commit(self) -> Path:
        self._done = True
        _replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        self._done = True
        _remove(self._tmp)


class ImageFileSink(FrameSink):
    """A single image (png, jpg, tif, ...) for a single-image input."""

    def __init__(self, path: Path, overwrite: bool = False) -> None:
        super().__init__(path, overwrite)
        self._tmp = _temp_name(path)
        self._rgb: np.ndarray | None = None

    def write(self, rgb: np.ndarray, pts: int, name: str | None = None) -> None:
        if self._rgb is not None:
            raise OutputError(f"{self.path} is an image file but the input has several frames")
        self._rgb = rgb
        self.frames_written += 1

    def commit(self) -> Path:
        self._done = True
        if self._rgb is None:
            raise OutputError("nothing to write")
        ok, buf = cv2.imencode(self.path.suffix.lower(), cv2.cvtColor(self._rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise OutputError(f"cannot encode {self.path.suffix} image")
        buf.tofile(str(self._tmp))
        _replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        self._done = True
        _remove(self._tmp)


def check_output_path(path: str | Path, overwrite: bool, input_path: Path | None = None) -> Path:
    """Validate an output path before any work is done.

    Raises:
        OutputError: the path exists (and ``overwrite`` is false), is the
            input itself, its folder does not exist or is not writable, or its
            extension is not one chromaflow writes.
    """
    p = Path(path)
    if input_path is not None and p.exists() and p.resolve() == Path(input_path).resolve():
        raise OutputError(f"output {p} is the input itself")
    if p.exists() and not overwrite:
        raise OutputError(f"output exists: {p} (pass --overwrite to replace it)")
    if p.exists() and p.is_dir() != _is_dir_target(p) and p.suffix:
        raise OutputError(f"output {p} exists and is a {'directory' if p.is_dir() else 'file'}")
    parent = p.absolute().parent
    if not parent.is_dir():
        raise OutputError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder is not writable: {parent}")
    ext = p.suffix.lower()
    if ext and ext not in VIDEO_OUTPUT_EXTENSIONS and ext not in IMAGE_EXTENSIONS:
        raise OutputError(
            f"cannot write {ext} files: use .mp4, .mov, .mkv or .avi for video, an image "
            "extension for a single image, or a name without extension for a frame directory"
        )
    return p


def open_sink(
    path: str | Path,
    info: SourceInfo,
    overwrite: bool = False,
    audio_from: Path | None = None,
    crf: int = 0,
    audio_offset: float = 0.0,
) -> FrameSink:
    """Open the right sink for ``path``: video by extension, image, or frame directory."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext in VIDEO_OUTPUT_EXTENSIONS:
        return VideoFileSink(p, info, overwrite, audio_from=audio_from, crf=crf, audio_offset=audio_offset)
    if ext in IMAGE_EXTENSIONS:
        if info.n_frames != 1:
            raise OutputError(
                f"{p} is an image file but the input has {info.n_frames} frames: "
                "give a video file or a directory"
            )
        return ImageFileSink(p, overwrite)
    return FrameDirSink(p, overwrite)


def _is_dir_target(p: Path) -> bool:
    ext = p.suffix.lower()
    return ext not in VIDEO_OUTPUT_EXTENSIONS and ext not in IMAGE_EXTENSIONS


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.stem}.chromaflow-{os.getpid()}.tmp{path.suffix}")


def _replace(tmp: Path, target: Path) -> None:
    """Move ``tmp`` onto ``target``; an existing target is removed only once the move is ready."""
    if target.is_dir() and not target.is_symlink():
        old = target.with_name(f".{target.name}.chromaflow-old-{os.getpid()}")
        target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)

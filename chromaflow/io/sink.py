"""Frame sinks: a video file (H.264, H.265, ProRes or FFV1; audio kept), a directory of PNG frames, or one image.

Sinks write to a temporary name beside the target and rename it into place in
:meth:`FrameSink.commit`; :meth:`FrameSink.abort` (or leaving a ``with`` block
by an exception) removes the temporary output, so a failed or interrupted run
never leaves a half-written file.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from chromaflow.errors import InputError, OutputError
from chromaflow.io.naming import IMAGE_EXTENSIONS, VIDEO_OUTPUT_EXTENSIONS
from chromaflow.io.source import SWS_ACCURATE, SourceInfo, format_bits

log = logging.getLogger("chromaflow")

#: Audio codecs each container accepts unchanged; others are re-encoded to AAC.
_AUDIO_COPY_OK = {
    ".mp4": {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"},
    ".m4v": {"aac", "mp3", "alac", "ac3", "eac3"},
    ".mov": {"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_f32le"},
    ".avi": {"mp3", "ac3", "pcm_s16le", "aac"},
    ".mkv": None,  # Matroska holds every codec
}


#: ``--codec`` choices: (FFmpeg encoder, the containers that hold it, what it is for).
CODECS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "h264": ("libx264", (".mp4", ".mov", ".m4v", ".mkv", ".avi"), "plays everywhere (browsers, QuickTime, editors)"),
    "h265": ("libx265", (".mp4", ".mov", ".mkv"), "smaller files, 10-bit; most players, Safari, QuickTime"),
    "prores": ("prores_ks", (".mov", ".mkv"), "ProRes 422 HQ / 4444, 10-bit, for editing (Resolve, Premiere, FCP)"),
    "ffv1": ("ffv1", (".mkv", ".avi"), "lossless, 8 or 10-bit, for archives"),
}


@dataclass(frozen=True)
class VideoEncoding:
    """How a video output is encoded (the run configuration's ``[output]``).

    Attributes:
        codec: a key of :data:`CODECS`.
        crf: quality of h264 / h265 (x264 / x265 constant rate factor, 0-51,
            lower is better; 18 is visually lossless); ProRes and FFV1 ignore it.
            0 with h264 or h265 means lossless, as ``lossless``.
        lossless: every pixel's gray kept exactly: h264 / h265 lossless 4:4:4
            (plays in FFmpeg-based players and editors, not browsers or
            QuickTime); FFV1 is always lossless, ProRes never.
        pix_fmt: FFmpeg pixel format, or ``None`` for the codec's choice:
            h264 ``yuv420p`` (``yuv444p`` lossless), h265 ``yuv420p`` or
            ``yuv420p10le`` for a 10-bit input, prores ``yuv422p10le``, ffv1
            ``yuv444p`` or ``yuv444p10le``.
        preset: x264 / x265 speed preset.
    """

    codec: str = "h264"
    crf: int = 18
    lossless: bool = False
    pix_fmt: str | None = None
    preset: str = "medium"

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise InputError(f"unknown codec {self.codec!r}; use one of {', '.join(CODECS)}")
        if not 0 <= int(self.crf) <= 51:
            raise InputError(f"crf must be in 0-51, got {self.crf}")
        if self.exact and self.codec == "prores":
            raise InputError("ProRes is never lossless: use --codec ffv1 (archives) or h264 / h265 for --lossless")
        if self.pix_fmt is not None and self.pix_fmt not in self.formats():
            raise InputError(f"{self.codec} cannot write --pix-fmt {self.pix_fmt}; it takes "
                             f"{', '.join(self.formats())}")

    @property
    def encoder(self) -> str:
        return CODECS[self.codec][0]

    @property
    def exact(self) -> bool:
        """Lossless: the encoder keeps every sample it is given."""
        return self.lossless or self.codec == "ffv1" or (self.crf == 0 and self.codec in ("h264", "h265"))

    def formats(self) -> list[str]:
        """The pixel formats this codec's encoder takes (planar YUV and gray)."""
        try:
            names = [f.name for f in av.Codec(self.encoder, "w").video_formats or ()]
        except (av.error.FFmpegError, ValueError):  # pragma: no cover - an FFmpeg build without it
            raise InputError(f"this FFmpeg (PyAV) has no {self.encoder} encoder: choose another --codec") from None
        return [n for n in names if n.startswith("yuv4") and not n.startswith("yuvj")]

    def check_container(self, path: Path) -> None:
        """Raise :class:`OutputError` if ``path``'s container cannot hold this codec."""
        ext = path.suffix.lower()
        if ext in VIDEO_OUTPUT_EXTENSIONS and ext not in CODECS[self.codec][1]:
            raise OutputError(f"{self.codec} does not go into {ext} files: use "
                              f"{' or '.join(CODECS[self.codec][1])}")

    def choose_pix_fmt(self, width: int, height: int, bit_depth: int = 8) -> str:
        """The pixel format for frames of this size from an input of ``bit_depth`` bits."""
        deep = bit_depth > 8
        if self.pix_fmt is not None:
            fmt = self.pix_fmt
        elif self.codec == "prores":
            fmt = "yuv422p10le"
        elif self.codec == "ffv1" or self.exact:
            fmt = "yuv444p10le" if deep and self.codec != "h264" else "yuv444p"
        elif self.codec == "h265" and deep:
            fmt = "yuv420p10le"
        else:  # h264: 8-bit 4:2:0, the one every player decodes
            fmt = "yuv420p"
        if ("420" in fmt and (width % 2 or height % 2)) or ("422" in fmt and width % 2):  # subsampled chroma
            full = fmt.replace("420", "444").replace("422", "444")
            log.warning("%dx%d has an odd side: writing %s (4:4:4) instead of %s, which some players cannot "
                        "show; write a frame directory or crop to even sizes for the widest support",
                        width, height, full, fmt)
            fmt = full
        return fmt


class FrameSink:
    """Base class for outputs; use as a context manager (commit on success)."""

    #: bits per sample the sink keeps of an input's luma (8: the 8-bit frames only)
    bit_depth = 8

    def __init__(self, path: Path, overwrite: bool) -> None:
        self.path = path
        self.overwrite = overwrite
        self.frames_written = 0
        self._done = False
        self.input_bits = 8  # bits per sample of the input (open_sink sets it)
        self._depth_told = False

    def _tell_depth(self, luma: np.ndarray | None) -> None:
        """Warn once when the input has more bits per sample than this output keeps."""
        if self._depth_told or self.input_bits <= 8:
            return
        self._depth_told = True
        kept = self.bit_depth if luma is not None else 8
        if kept < self.input_bits:
            hint = ("--codec h265, prores or ffv1 keep 10 bits" if isinstance(self, VideoFileSink) and kept == 8
                    else "a .mkv with --codec ffv1 keeps 10 bits" if kept == 8 else "")
            log.warning("the input has %d-bit samples; %s keeps %d bits of them%s", self.input_bits,
                        self.path.name, kept, f" ({hint})" if hint else "")

    def write(self, rgb: np.ndarray, pts: int, name: str | None = None,
              luma: np.ndarray | None = None) -> None:  # pragma: no cover
        """Append one ``(H, W, 3)`` ``uint8`` sRGB frame with its presentation time.

        ``luma``: the input's ``(H, W)`` ``uint16`` luma at :attr:`bit_depth` bits
        (limited range), which a deeper sink writes as the frame's Y plane.
        """
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
    """Video in mp4, mov, mkv or avi (see :class:`VideoEncoding`), with the audio of ``audio_from`` copied in.

    Args:
        path: output file; the container follows its extension.
        info: the source's size, frame rate and time base (kept in the output).
        audio_from: a media file whose audio streams are copied unchanged (or
            re-encoded to AAC when the container cannot hold their codec).
        encoding: codec, quality and pixel format; the default is H.264 4:2:0 at
            crf 18, which plays everywhere with the gray within a level or two.
        audio_offset: seconds of the input's audio to skip (a range of frames
            starts there); the audio kept is shifted to start with the video.

    A pixel format of more than 8 bits keeps a deeper input's precision where
    :meth:`write` is given its luma (:meth:`VideoFileSource.luma`).
    """

    def __init__(
        self,
        path: Path,
        info: SourceInfo,
        overwrite: bool = False,
        audio_from: Path | None = None,
        encoding: VideoEncoding | None = None,
        audio_offset: float = 0.0,
    ) -> None:
        super().__init__(path, overwrite)
        self.encoding = encoding = encoding or VideoEncoding()
        encoding.check_container(path)
        self._tmp = _temp_name(path)
        ext = path.suffix.lower()
        # Matroska shifts every stream when one starts before 0 (AAC priming): keep the input's times instead;
        # MP4 and MOV get their index first, so a browser can start playing before the whole file is loaded
        options = ({"avoid_negative_ts": "disabled"} if ext == ".mkv"
                   else {"movflags": "+faststart"} if ext in (".mp4", ".m4v", ".mov") else {})
        try:
            self._out = av.open(str(self._tmp), mode="w", options=options)
        except (av.error.FFmpegError, OSError) as exc:
            raise OutputError(f"cannot write {path}: {exc}") from None
        try:
            self._stream = self._add_video_stream(info, encoding)
            self._audio = (_AudioCopier(audio_from, self._out, path.suffix.lower(), audio_offset)
                           if audio_from else None)
        except Exception:
            self._out.close()
            _remove(self._tmp)
            raise
        self._time_base = info.time_base

    def _add_video_stream(self, info: SourceInfo, enc: VideoEncoding) -> av.VideoStream:
        rate = Fraction(info.fps).limit_denominator(1001000)
        stream = self._out.add_stream(enc.encoder, rate=rate)
        stream.width = info.width
        stream.height = info.height
        # Lossless keeps every pixel's gray exactly only at full chroma resolution (4:2:0 averaging moves it).
        stream.pix_fmt = enc.choose_pix_fmt(info.width, info.height, info.bit_depth)
        self.bit_depth = format_bits(stream.pix_fmt)
        stream.time_base = info.time_base
        stream.codec_context.time_base = info.time_base
        cc = stream.codec_context
        cc.colorspace = 6  # SMPTE 170M (BT.601), the matrix frames are converted with
        cc.color_range = 1  # limited ("tv") range
        if enc.codec == "h264":
            # x264's macroblock tree made lossy outputs of the same frames differ from run to run here (one
            # encode in three or so, by up to 30 levels; threads=1 did not help): it is off, so the same input,
            # options and seed give the same file
            stream.options = {"crf": str(0 if enc.exact else enc.crf), "preset": enc.preset,
                              **({} if enc.exact else {"x264-params": "mbtree=0"})}
        elif enc.codec == "h265":
            params = "log-level=error" + (":lossless=1" if enc.exact else "")
            stream.options = {"crf": str(enc.crf), "preset": enc.preset, "x265-params": params}
            if self.path.suffix.lower() in (".mp4", ".mov"):
                cc.codec_tag = "hvc1"  # what QuickTime and Safari play (FFmpeg's default is hev1)
        elif enc.codec == "prores":  # 422 HQ, or 4444 for a 4:4:4 format
            stream.options = {"profile": "4" if "444" in stream.pix_fmt else "3", "vendor": "apl0"}
        else:  # ffv1 version 3, every frame intra, CRC per slice (the archival settings)
            stream.options = {"level": "3", "g": "1", "slicecrc": "1", "slices": "4"}
        return stream

    def write(self, rgb: np.ndarray, pts: int, name: str | None = None, luma: np.ndarray | None = None) -> None:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(
            format=self._stream.pix_fmt, dst_colorspace="ITU601", interpolation=SWS_ACCURATE
        )
        self._tell_depth(luma)
        if luma is not None:  # the input's own luma, at the output's depth: its precision kept
            plane = frame.planes[0]
            y = np.frombuffer(plane, np.dtype("<u2") if self.bit_depth > 8 else np.uint8).reshape(plane.height, -1)
            y[:, : plane.width] = luma
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
    """A directory of PNG frames named after the input's file stems (or frame numbers).

    Frames hold no sound: the audio of ``audio_from`` goes into the directory
    as ``audio.m4a`` (or ``audio.mka`` for codecs MP4 cannot hold), copied
    unchanged, and the log says so (:attr:`audio_path`).
    """

    def __init__(self, path: Path, overwrite: bool = False, audio_from: Path | None = None,
                 audio_offset: float = 0.0) -> None:
        super().__init__(path, overwrite)
        self._tmp = _temp_name(path)
        _remove(self._tmp)
        self._tmp.mkdir(parents=False)
        self.audio_path: Path | None = None
        self._audio_from, self._audio_offset = audio_from, audio_offset

    def _write_audio(self) -> None:
        with av.open(str(self._audio_from)) as probe:
            names = {s.codec_context.codec.canonical_name for s in probe.streams.audio}
        if not names:
            return
        ext = ".m4a" if names <= _AUDIO_COPY_OK[".mp4"] else ".mka"
        target = self._tmp / f"audio{ext}"
        try:
            out = av.open(str(target), mode="w", format="ipod" if ext == ".m4a" else "matroska",
                          options={"avoid_negative_ts": "disabled"} if ext == ".mka" else {})
        except (av.error.FFmpegError, OSError) as exc:
            raise OutputError(f"cannot write {target.name} in {self.path}: {exc}") from None
        try:
            _AudioCopier(self._audio_from, out, ".mp4" if ext == ".m4a" else ".mkv", self._audio_offset).finish()
        finally:
            out.close()
        self.audio_path = self.path / target.name

    def write(self, rgb: np.ndarray, pts: int, name: str | None = None, luma: np.ndarray | None = None) -> None:
        self._tell_depth(None)
        stem = name if name else f"frame_{self.frames_written:06d}"
        target = self._tmp / f"{stem}.png"
        ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise OutputError(f"cannot encode frame {stem} as PNG")
        buf.tofile(str(target))
        self.frames_written += 1

    def commit(self) -> Path:
        self._done = True
        try:
            if self._audio_from is not None:
                self._write_audio()
        except BaseException:
            _remove(self._tmp)
            raise
        _replace(self._tmp, self.path)
        if self.audio_path is not None:
            log.info("the audio is in %s (frames hold no sound; copied unchanged)", self.audio_path)
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

    def write(self, rgb: np.ndarray, pts: int, name: str | None = None, luma: np.ndarray | None = None) -> None:
        self._tell_depth(None)
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
    crf: int | None = None,
    audio_offset: float = 0.0,
    encoding: VideoEncoding | None = None,
) -> FrameSink:
    """Open the right sink for ``path``: video by extension, image, or frame directory.

    Args:
        encoding: how a video is encoded (default :class:`VideoEncoding`); ``crf`` replaces its crf.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext in VIDEO_OUTPUT_EXTENSIONS:
        encoding = encoding or VideoEncoding()
        if crf is not None:
            encoding = dataclasses.replace(encoding, crf=crf)
        sink: FrameSink = VideoFileSink(p, info, overwrite, audio_from=audio_from, encoding=encoding,
                                        audio_offset=audio_offset)
    elif ext in IMAGE_EXTENSIONS:
        if info.n_frames != 1:
            raise OutputError(
                f"{p} is an image file but the input has {info.n_frames} frames: "
                "give a video file or a directory"
            )
        sink = ImageFileSink(p, overwrite)
    else:
        sink = FrameDirSink(p, overwrite, audio_from=audio_from, audio_offset=audio_offset)
    sink.input_bits = info.bit_depth
    return sink


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

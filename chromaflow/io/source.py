"""Frame sources: a video file, a directory of frames, a single image, or arrays.

Every source streams ``uint8`` sRGB frames of shape ``(H, W, 3)`` one at a
time, so memory does not grow with the length of the video.  Problems with the
input raise :class:`~chromaflow.errors.InputError` with a one-line message.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import Interpolation
from PIL import Image

from chromaflow.errors import InputError
from chromaflow.io.naming import VIDEO_EXTENSIONS, is_image_path, list_images

#: swscale flags for exact YUV <-> RGB conversion (the defaults are off by about one gray level).
SWS_ACCURATE = (
    Interpolation.BILINEAR
    | Interpolation.ACCURATE_RND
    | Interpolation.FULL_CHR_H_INT
    | Interpolation.FULL_CHR_H_INP
)

#: Frame rate used for frame directories and images unless the user gives one.
DEFAULT_FPS = Fraction(25)


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    Attributes:
        index: 0-based position in the source.
        rgb: ``(H, W, 3)`` ``uint8`` sRGB.
        pts: presentation time in units of the source's ``time_base``.
        pts_exact: ``pts`` is the file's own (``False``: the file had none, or
            one not after the previous frame's, and it was made up).
    """

    index: int
    rgb: np.ndarray
    pts: int
    pts_exact: bool = True


@dataclass(frozen=True)
class SourceInfo:
    """What is known about a source before decoding it.

    Attributes:
        kind: ``"video"``, ``"frames"`` (a directory), ``"image"`` or ``"arrays"``.
        width, height: frame size in pixels.
        n_frames: number of frames.
        fps: average frame rate.
        time_base: unit of :attr:`Frame.pts`, in seconds.
        names: file stems for frame directories and images (else empty).
        audio_streams: number of audio streams (video files only).
        path: the input path, if any.
        bit_depth: bits per sample of the input (10 for a ``yuv420p10le`` video, 16 for
            16-bit PNG or TIFF frames); frames are still delivered as 8-bit sRGB.
    """

    kind: str
    width: int
    height: int
    n_frames: int
    fps: Fraction
    time_base: Fraction
    names: tuple[str, ...] = ()
    audio_streams: int = 0
    path: Path | None = None
    start_pts: int = 0
    metadata: dict = field(default_factory=dict)
    bit_depth: int = 8


class FrameSource:
    """Base class: iterate to get :class:`Frame` objects; use as a context manager."""

    info: SourceInfo

    def __iter__(self) -> Iterator[Frame]:  # pragma: no cover - abstract
        raise NotImplementedError

    def frames(self, start: int = 0, stop: int | None = None, start_pts: int | None = None) -> Iterator[Frame]:
        """The frames ``[start, stop)`` (``stop`` ``None``: to the end), with their indices in the source.

        ``start_pts`` (the timestamp of frame ``start``, from an earlier pass)
        lets a video file seek instead of decoding everything before
        ``start``; the frames are the same either way.
        """
        for frame in self:
            if stop is not None and frame.index >= stop:
                return
            if frame.index >= start:
                yield frame

    def close(self) -> None:
        pass

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.info.n_frames


class ArraySource(FrameSource):
    """Frames held in memory (tests, benchmarks, the Python API).

    Args:
        frames: a sequence of ``(H, W, 3)`` ``uint8`` RGB or ``(H, W)`` gray
            frames of one size, or an iterable with ``n_frames`` given.
        fps: frame rate.
        names: optional stems used when writing a frame directory.
    """

    def __init__(
        self,
        frames: Sequence[np.ndarray],
        fps: Fraction | float = DEFAULT_FPS,
        names: Sequence[str] = (),
    ) -> None:
        if len(frames) == 0:
            raise InputError("no frames given")
        h, w = frames[0].shape[:2]
        self._frames = frames
        fps = Fraction(fps).limit_denominator(1001000)
        self.info = SourceInfo(
            kind="arrays",
            width=w,
            height=h,
            n_frames=len(frames),
            fps=fps,
            time_base=1 / fps,
            names=tuple(names),
        )

    def __iter__(self) -> Iterator[Frame]:
        h, w = self.info.height, self.info.width
        for i, f in enumerate(self._frames):
            if f.shape[:2] != (h, w):
                raise InputError(f"frame {i} is {f.shape[1]}x{f.shape[0]}, expected {w}x{h}")
            yield Frame(i, _as_rgb(np.asarray(f)), i)

    def frames(self, start: int = 0, stop: int | None = None, start_pts: int | None = None) -> Iterator[Frame]:
        h, w = self.info.height, self.info.width
        stop = len(self._frames) if stop is None else min(stop, len(self._frames))
        for i in range(start, stop):
            f = self._frames[i]
            if f.shape[:2] != (h, w):
                raise InputError(f"frame {i} is {f.shape[1]}x{f.shape[0]}, expected {w}x{h}")
            yield Frame(i, _as_rgb(np.asarray(f)), i)


class ImageSequenceSource(FrameSource):
    """A directory of image files (sorted naturally) or a single image."""

    def __init__(self, paths: list[Path], kind: str, fps: Fraction = DEFAULT_FPS) -> None:
        self._paths = paths
        first = _read_image(paths[0])
        h, w = first.shape[:2]
        fps = Fraction(fps)
        self.info = SourceInfo(
            kind=kind,
            width=w,
            height=h,
            n_frames=len(paths),
            fps=fps,
            time_base=1 / fps,
            names=tuple(p.stem for p in paths),
            path=paths[0].parent if kind == "frames" else paths[0],
            bit_depth=_image_bit_depth(paths[0]),
        )
        if kind == "frames":
            self._check_sizes()

    def _check_sizes(self) -> None:
        w, h = self.info.width, self.info.height
        for p in self._paths[1:]:
            size = _image_size(p)
            if size != (w, h):
                raise InputError(
                    f"mixed frame sizes in {self._paths[0].parent}: {self._paths[0].name} is "
                    f"{w}x{h} but {p.name} is {size[0]}x{size[1]}"
                )

    def __iter__(self) -> Iterator[Frame]:
        for i, p in enumerate(self._paths):
            yield Frame(i, _read_image(p), i)

    def frames(self, start: int = 0, stop: int | None = None, start_pts: int | None = None) -> Iterator[Frame]:
        stop = len(self._paths) if stop is None else min(stop, len(self._paths))
        for i in range(start, stop):
            yield Frame(i, _read_image(self._paths[i]), i)


class VideoFileSource(FrameSource):
    """A video file decoded with PyAV, one frame at a time.

    Decoding stops at a damaged tail (frames before it are kept);
    :attr:`decode_error` then says why, for the caller to report.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.decode_error: str | None = None
        try:
            container = av.open(str(path))
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read {path}: not a video file ({_short(exc)})") from None
        try:
            if not container.streams.video:
                raise InputError(f"{path} has no video stream")
            stream = container.streams.video[0]
            n_frames = stream.frames or _count_frames(path)
            if n_frames == 0:
                raise InputError(f"{path} has no video frames")
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not rate:
                rate = DEFAULT_FPS
            time_base = stream.time_base or (1 / Fraction(rate))
            cc = stream.codec_context
            if not cc.width or not cc.height:
                raise InputError(f"{path}: the video stream has no frame size")
            self.info = SourceInfo(
                kind="video",
                width=cc.width,
                height=cc.height,
                n_frames=n_frames,
                fps=Fraction(rate),
                time_base=Fraction(time_base),
                audio_streams=len(container.streams.audio),
                path=path,
                start_pts=stream.start_time or 0,
                metadata={"codec": cc.name, "pix_fmt": cc.format.name if cc.format else None},
                bit_depth=format_bits(cc.format),
            )
        finally:
            container.close()

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def frames(self, start: int = 0, stop: int | None = None, start_pts: int | None = None) -> Iterator[Frame]:
        """Decoded frames ``[start, stop)``; with ``start_pts`` the file is seeked to the keyframe before
        ``start`` (falling back to decoding from the beginning where the seek does not land on it)."""
        if start > 0 and start_pts is not None:
            seeked = self._decode(start, stop, seek_pts=start_pts)
            first = next(seeked, None)
            if first is not None:  # the seek landed on frame ``start``
                yield first
                yield from seeked
                return
        for frame in self._decode(0, stop):
            if frame.index >= start:
                yield frame

    def _decode(self, start: int, stop: int | None, seek_pts: int | None = None) -> Iterator[Frame]:
        """Frames from ``start`` on; with ``seek_pts`` decoding starts at the keyframe before that timestamp,
        and nothing is yielded unless a frame with exactly that timestamp is found (indices then count from
        ``start`` there)."""
        try:
            container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError) as exc:
            raise InputError(f"cannot read {self.path}: {_short(exc)}") from None
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            index = start if seek_pts is not None else 0
            last_pts = None
            step = _pts_step(self.info)
            found = seek_pts is None
            try:
                if seek_pts is not None:
                    container.seek(int(seek_pts), stream=stream, backward=True, any_frame=False)
                for frame in container.decode(stream):
                    pts = frame.pts
                    if not found:
                        if pts is None or pts > seek_pts:
                            return  # the seek missed the frame: the caller decodes from the start
                        if pts < seek_pts:
                            continue
                        found = True
                    if stop is not None and index >= stop:
                        return
                    exact = not (pts is None or (last_pts is not None and pts <= last_pts))
                    if not exact:
                        pts = (last_pts + step) if last_pts is not None else self.info.start_pts
                    last_pts = pts
                    rgb = frame.reformat(format="rgb24", interpolation=SWS_ACCURATE).to_ndarray()
                    if rgb.shape[:2] != (self.info.height, self.info.width):
                        rgb = cv2.resize(rgb, (self.info.width, self.info.height), interpolation=cv2.INTER_AREA)
                    yield Frame(index, rgb, pts, exact)
                    index += 1
            except av.error.FFmpegError as exc:
                if index == start:
                    raise InputError(f"cannot decode {self.path}: {_short(exc)}") from None
                # A damaged tail: keep what decoded, the pipeline reports the count.
                self.decode_error = _short(exc)
                return
        finally:
            container.close()


    def luma(self, start: int = 0, stop: int | None = None, bits: int = 10) -> Iterator[np.ndarray]:
        """The luma (Y) plane of frames ``[start, stop)`` at ``bits`` bits, limited ("tv") range.

        Decodes the file in its own sample format, so a 10-bit video gives its 10
        bits (an 8-bit one its 8, scaled): ``(H, W)`` ``uint16`` arrays, black at
        ``16 << (bits - 8)``.  The gray of a colorized frame equals this luma, so
        an output can carry it at the input's precision.
        """
        container = av.open(str(self.path))
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            index = 0
            for frame in container.decode(stream):
                if stop is not None and index >= stop:
                    return
                if index >= start:
                    yield _luma_plane(frame, bits, self.info.width, self.info.height)
                index += 1
        except av.error.FFmpegError as exc:
            raise InputError(f"cannot decode {self.path}: {_short(exc)}") from None
        finally:
            container.close()


def format_bits(fmt) -> int:
    """Bits per sample of a video format (a PyAV ``VideoFormat`` or its name; 8 when unknown)."""
    try:
        fmt = av.VideoFormat(fmt) if isinstance(fmt, str) else fmt
        return max(c.bits for c in fmt.components) if fmt is not None and fmt.components else 8
    except (AttributeError, ValueError):
        return 8


def _luma_plane(frame: av.VideoFrame, bits: int, width: int, height: int) -> np.ndarray:
    """The Y plane of ``frame`` as ``(height, width)`` ``uint16`` at ``bits`` bits, limited range."""
    fmt = frame.format
    planar_yuv = fmt.name.startswith(("yuv", "yuvj")) and not fmt.is_rgb and len(fmt.components) >= 3
    src_bits = format_bits(fmt)
    if planar_yuv and src_bits <= 16:
        plane = frame.planes[0]
        dtype = np.uint8 if src_bits <= 8 else np.dtype("<u2")
        y = np.frombuffer(plane, dtype).reshape(plane.height, -1)[:, : plane.width].astype(np.float64)
        full = fmt.name.startswith("yuvj") or frame.color_range == 2  # JPEG ("pc") range
    else:  # RGB or packed formats: let swscale make the luma
        out = frame.reformat(format="yuv444p16le", dst_colorspace="ITU601", interpolation=SWS_ACCURATE)
        plane = out.planes[0]
        y = np.frombuffer(plane, np.dtype("<u2")).reshape(plane.height, -1)[:, : plane.width].astype(np.float64)
        src_bits, full = 16, False
    if full:  # full ("pc") range 0..2^b-1 -> limited 16..235, scaled to b bits
        scale = 2.0 ** (src_bits - 8)
        y = 16.0 * scale + y * (219.0 * scale / (2.0**src_bits - 1.0))
    y = np.rint(y * 2.0 ** (bits - src_bits))
    y = np.clip(y, 0, 2**bits - 1).astype(np.uint16)
    if y.shape != (height, width):
        y = cv2.resize(y, (width, height), interpolation=cv2.INTER_AREA)
    return y


def open_source(path: str | Path, fps: Fraction | float | None = None) -> FrameSource:
    """Open a video file, a directory of frames or a single image.

    Args:
        path: the input.
        fps: frame rate for frame directories and images (default 25); ignored
            for video files, whose own timing is kept.

    Raises:
        InputError: the path is missing, empty, unreadable, not a video or
            image, has no frames, or holds frames of mixed sizes.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"input not found: {p}")
    rate = Fraction(fps).limit_denominator(1001000) if fps else DEFAULT_FPS
    if p.is_dir():
        images = list_images(p)
        if not images:
            raise InputError(f"no image files (png, jpg, tif, bmp, webp) in directory {p}")
        return ImageSequenceSource(images, "frames", rate)
    if is_image_path(p):
        return ImageSequenceSource([p], "image", rate)
    if p.stat().st_size == 0:
        raise InputError(f"{p} is an empty file")
    if p.suffix.lower() not in VIDEO_EXTENSIONS:
        # Unknown extension: let FFmpeg decide, it reports a clear error if it cannot.
        pass
    return VideoFileSource(p)


def _read_image(path: Path) -> np.ndarray:
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise InputError(f"cannot read image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _image_bit_depth(path: Path) -> int:
    """Bits per sample of an image file (8, or 16 for 16-bit PNG / TIFF scans)."""
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    return 8 if img is None else 8 * img.dtype.itemsize


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, read from its header when possible."""
    try:
        with Image.open(path) as im:  # reads the header only
            return im.size
    except (OSError, ValueError):
        img = _read_image(path)
        return img.shape[1], img.shape[0]


def _as_rgb(frame: np.ndarray) -> np.ndarray:
    if frame.dtype != np.uint8:
        raise InputError(f"frames must be uint8, got {frame.dtype}")
    if frame.ndim == 2:
        return np.repeat(frame[..., None], 3, axis=2)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    raise InputError(f"frames must be (H, W) or (H, W, 3), got {frame.shape}")


def _count_frames(path: Path) -> int:
    """Count video packets without decoding (for containers that do not store it)."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return sum(1 for pkt in container.demux(stream) if pkt.size > 0)
    except av.error.FFmpegError as exc:
        raise InputError(f"cannot read {path}: {_short(exc)}") from None


def _pts_step(info: SourceInfo) -> int:
    return max(1, round(1 / (info.fps * info.time_base))) if info.fps and info.time_base else 1


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def is_probably_color(rgb: np.ndarray, tolerance: int = 6, fraction: float = 0.01) -> bool:
    """True when more than ``fraction`` of pixels differ between channels by more than ``tolerance``.

    Compression leaves small channel differences in grayscale footage; this
    test ignores them.
    """
    small = rgb[:: max(1, rgb.shape[0] // 128), :: max(1, rgb.shape[1] // 128)].astype(np.int16)
    spread = small.max(axis=2) - small.min(axis=2)
    return bool((spread > tolerance).mean() > fraction)


__all__ = [
    "ArraySource",
    "DEFAULT_FPS",
    "Frame",
    "FrameSource",
    "ImageSequenceSource",
    "SourceInfo",
    "VideoFileSource",
    "is_probably_color",
    "open_source",
]


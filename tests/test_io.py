"""Tests for chromaflow.io: sources, sinks, naming and output-path checks."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import (
    FPS,
    N_FRAMES,
    H,
    W,
    audio_packets,
    gray_of,
    list_dir,
    make_clip_frames,
    read_frames,
    read_pts,
    write_png,
)

from chromaflow.errors import InputError, OutputError
from chromaflow.io import ArraySource, check_output_path, is_probably_color, open_sink, open_source
from chromaflow.io.naming import list_images, natural_key, natural_sorted
from chromaflow.io.sink import FrameDirSink, VideoEncoding

# ----------------------------------------------------------------- naming


def test_natural_sort_orders_numbers_by_value() -> None:
    names = ["frame_10.png", "frame_2.png", "frame_1.png", "Frame_11.png", "frame_9.png"]
    got = [p.name for p in natural_sorted([Path(n) for n in names])]
    assert got == ["frame_1.png", "frame_2.png", "frame_9.png", "frame_10.png", "Frame_11.png"]
    assert natural_key("a2") < natural_key("a10")
    assert sorted(["a10", "a2", "b1"], key=natural_key) == ["a2", "a10", "b1"]


def test_list_images_skips_hidden_and_non_images(tmp_path: Path) -> None:
    img = np.zeros((4, 6, 3), np.uint8)
    for name in ["f10.png", "f2.jpg", ".f1.png", "notes.txt", "f3.PNG"]:
        if name.endswith("txt"):
            (tmp_path / name).write_text("x")
        else:
            write_png(tmp_path / name, img)
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["f2.jpg", "f3.PNG", "f10.png"]


# ----------------------------------------------------------------- sources


def test_open_source_video(clips) -> None:
    with open_source(clips.gray_audio_video) as src:
        info = src.info
        frames = list(src)
    assert info.kind == "video"
    assert (info.width, info.height) == (W, H)
    assert info.n_frames == N_FRAMES == len(src)
    assert info.fps == Fraction(FPS)
    assert info.audio_streams == 1
    assert isinstance(info.time_base, Fraction) and info.time_base > 0
    assert len(frames) == N_FRAMES
    assert [f.index for f in frames] == list(range(N_FRAMES))
    # pts advance by exactly one frame duration in time_base units
    step = 1 / (info.fps * info.time_base)
    assert step.denominator == 1
    assert [f.pts for f in frames] == [info.start_pts + i * int(step) for i in range(N_FRAMES)]
    for f in frames:
        assert f.rgb.shape == (H, W, 3) and f.rgb.dtype == np.uint8
    with open_source(clips.color_video) as src:
        assert src.info.audio_streams == 0


def test_open_source_video_pixels_match(clips) -> None:
    got = read_frames(clips.gray_video)
    for g, ref in zip(got, clips.frames):
        # gray encoded at crf 4 4:2:0: within a few levels
        assert np.abs(gray_of(g).astype(int) - gray_of(ref)).max() <= 6
        assert not is_probably_color(g)
    assert is_probably_color(read_frames(clips.color_video)[0])


def test_open_source_frame_dir_natural_order(clips) -> None:
    with open_source(clips.frame_dir) as src:
        info = src.info
        frames = list(src)
    assert info.kind == "frames"
    assert info.n_frames == N_FRAMES
    assert info.names == tuple(f"frame_{i}" for i in range(1, N_FRAMES + 1))
    assert info.fps == 25  # default
    assert info.audio_streams == 0
    # PNG is lossless: frame k of the directory is frame k of the clip (so 2 came before 10).
    for f, ref in zip(frames, clips.frames):
        np.testing.assert_array_equal(f.rgb, ref)
    with open_source(clips.frame_dir, fps=12.5) as src:
        assert src.info.fps == Fraction(25, 2) and src.info.time_base == Fraction(2, 25)


def test_open_source_single_image(clips) -> None:
    with open_source(clips.reference) as src:
        assert src.info.kind == "image"
        assert src.info.n_frames == 1
        assert src.info.names == ("ref0",)
        (frame,) = list(src)
    np.testing.assert_array_equal(frame.rgb, clips.frames[0])


def test_array_source() -> None:
    frames = [np.full((6, 8), i, np.uint8) for i in range(3)]
    src = ArraySource(frames, fps=10)
    out = list(src)
    assert [f.pts for f in out] == [0, 1, 2]
    assert out[2].rgb.shape == (6, 8, 3) and out[2].rgb[0, 0, 1] == 2
    assert src.info.time_base == Fraction(1, 10)
    with pytest.raises(InputError):
        ArraySource([])
    with pytest.raises(InputError):
        list(ArraySource([np.zeros((6, 8), np.uint8), np.zeros((6, 9), np.uint8)]))


def test_open_source_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        open_source(tmp_path / "missing.mp4")

    empty = tmp_path / "empty_dir"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match="no image files"):
        open_source(empty)

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    write_png(mixed / "f1.png", np.zeros((10, 12, 3), np.uint8))
    write_png(mixed / "f2.png", np.zeros((10, 12, 3), np.uint8))
    write_png(mixed / "f10.png", np.zeros((11, 12, 3), np.uint8))
    with pytest.raises(InputError, match="mixed frame sizes.*f10.png"):
        open_source(mixed)

    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video, just some text\n" * 20)
    with pytest.raises(InputError, match="notes.mp4: not a video file"):
        open_source(text)

    zero = tmp_path / "zero.mp4"
    zero.write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        open_source(zero)

    bad_png = tmp_path / "bad.png"
    bad_png.write_bytes(b"\x89PNG not really")
    with pytest.raises(InputError, match="cannot read image"):
        open_source(bad_png)


def test_open_source_video_without_frames(tmp_path: Path) -> None:
    path = tmp_path / "noframes.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=12)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        out.start_encoding()  # header and an empty track, no frames
    assert path.stat().st_size > 0
    with pytest.raises(InputError, match=r"noframes.mp4 has no video"):
        with open_source(path) as src:
            list(src)


# ----------------------------------------------------------------- sinks


def _write_through(src_path: Path, out_path: Path, lossless: bool = True, audio: bool = True) -> list[np.ndarray]:
    """Copy a video through open_sink (frames unchanged); returns the frames written."""
    written = []
    with open_source(src_path) as src:
        with open_sink(out_path, src.info, audio_from=src_path if audio else None,
                       encoding=VideoEncoding(lossless=lossless)) as sink:
            for f in src:
                sink.write(f.rgb, f.pts)
                written.append(f.rgb)
        assert sink.frames_written == len(written)
    return written


def test_video_sink_round_trip_mp4_with_audio(clips, tmp_path: Path) -> None:
    src_path = clips.gray_audio_video
    out = tmp_path / "out.mp4"
    # Colour frames (so chroma matters), timing and audio from the gray+audio clip.
    with open_source(clips.gray_audio_video) as src:
        info = src.info
        pts = [f.pts for f in src]
    with open_sink(out, info, audio_from=src_path, encoding=VideoEncoding(lossless=True)) as sink:
        for rgb, p in zip(clips.frames, pts):
            sink.write(rgb, p)
    assert list_dir(tmp_path) == ["out.mp4"]

    with open_source(out) as res:
        assert res.info.n_frames == N_FRAMES
        assert res.info.fps == info.fps
        assert res.info.audio_streams == 1
        got = [f for f in res]
    assert [f.pts for f in got] == pts
    assert audio_packets(out) == audio_packets(src_path)
    assert audio_packets(out)[0] == "aac" and audio_packets(out)[1] > 10

    # lossless (H.264 4:4:4): the gray of every frame comes back within one level.
    for f, rgb in zip(got, clips.frames):
        d = np.abs(gray_of(f.rgb).astype(int) - gray_of(rgb).astype(int))
        assert (d <= 1).mean() >= 0.99
        # and the colour too, closely
        assert np.abs(f.rgb.astype(int) - rgb).mean() < 2.0


@pytest.mark.parametrize("ext", [".mkv", ".mov"])
def test_video_sink_other_containers(clips, tmp_path: Path, ext: str) -> None:
    out = tmp_path / f"out{ext}"
    written = _write_through(clips.gray_audio_video, out)
    assert list_dir(tmp_path) == [out.name]
    assert len(read_frames(out)) == len(written) == N_FRAMES
    with open_source(out) as res:
        assert res.info.audio_streams == 1
        assert res.info.fps == FPS
        tb_out = res.info.time_base
    with open_source(clips.gray_audio_video) as src:
        tb_in = src.info.time_base
    # The same frame times (Matroska counts in ms), from the same start: no stream is shifted.
    t_out = [float(p * tb_out) for p in read_pts(out)]
    t_in = [float(p * tb_in) for p in read_pts(clips.gray_audio_video)]
    np.testing.assert_allclose(t_out, t_in, atol=1e-3)
    assert audio_packets(out) == audio_packets(clips.gray_audio_video)
    # Every audio packet kept at its own time, the AAC priming packet before 0 included
    # (Matroska used to shift both streams by it, 21 ms at 48 kHz).
    a_in, a_out = audio_times(clips.gray_audio_video), audio_times(out)
    assert a_in[0] < 0 and len(a_out) == len(a_in)
    np.testing.assert_allclose(a_out, a_in, atol=1e-3)


def audio_times(path: Path) -> list[float]:
    """Presentation times (s) of the non-empty packets of the first audio stream."""
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        return [float(p.pts * p.time_base) for p in c.demux(s) if p.size > 0 and p.pts is not None]


def test_default_video_output_plays_everywhere(clips, tmp_path: Path) -> None:
    """The default is H.264 High profile 4:2:0 (what browsers and QuickTime decode), the gray within a level or two."""
    out = tmp_path / "web.mp4"
    with open_source(clips.gray_audio_video) as src:
        with open_sink(out, src.info) as sink:
            for rgb, f in zip(clips.frames, src):
                sink.write(rgb, f.pts)
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.name, cc.format.name, cc.profile) == ("h264", "yuv420p", "High")
    data = out.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # the index first: a browser plays while loading
    lossless = tmp_path / "exact.mp4"
    _write_through(clips.gray_audio_video, lossless, lossless=True)
    assert out.stat().st_size * 2 < lossless.stat().st_size  # far smaller than lossless
    for got, rgb in zip(read_frames(out), clips.frames):
        d = np.abs(gray_of(got).astype(int) - gray_of(rgb).astype(int))
        assert d.mean() < 1.5 and np.percentile(d, 99) <= 6  # a noisy 96x64 clip; lossless: test above


def test_default_video_output_is_the_same_file_every_time(clips, tmp_path: Path) -> None:
    """The same frames give the same lossy file (x264's macroblock tree made them differ one encode in three)."""
    digests = set()
    with open_source(clips.gray_audio_video) as src:
        info, pts = src.info, [f.pts for f in src]
    kept = []
    for k in range(6):
        out = tmp_path / f"{k}.mp4"
        with open_sink(out, info) as sink:
            for rgb, p in zip(clips.frames, pts):
                sink.write(rgb, p)
        digests.add(out.read_bytes())
        kept.append(read_frames(out))  # decoding in between (and keeping the frames) is what made them differ
    assert len(digests) == 1


@pytest.mark.parametrize("codec,ext,pix_fmt,tag", [
    ("h265", ".mp4", "yuv420p", "hvc1"), ("prores", ".mov", "yuv422p10le", "apch"), ("ffv1", ".mkv", "yuv444p", None)])
def test_video_codecs(clips, tmp_path: Path, codec: str, ext: str, pix_fmt: str, tag: str | None) -> None:
    out = tmp_path / f"out{ext}"
    with open_source(clips.gray_audio_video) as src:
        with open_sink(out, src.info, audio_from=clips.gray_audio_video, encoding=VideoEncoding(codec)) as sink:
            for rgb, f in zip(clips.frames, src):
                sink.write(rgb, f.pts)
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert cc.format.name == pix_fmt
        if tag:
            assert cc.codec_tag == tag
    assert audio_packets(out) == audio_packets(clips.gray_audio_video)
    for got, rgb in zip(read_frames(out), clips.frames):
        d = np.abs(gray_of(got).astype(int) - gray_of(rgb).astype(int))
        if codec == "ffv1":  # lossless: only the RGB <-> YUV rounding
            assert (d <= 1).mean() >= 0.99
        else:
            assert d.mean() < 1.5 and np.percentile(d, 99) <= 6


def test_video_encoding_refuses_what_cannot_be(tmp_path: Path) -> None:
    info = ArraySource([np.zeros((8, 10, 3), np.uint8)]).info
    with pytest.raises(OutputError, match=r"prores does not go into \.mp4 files: use \.mov or \.mkv"):
        open_sink(tmp_path / "x.mp4", info, encoding=VideoEncoding("prores"))
    with pytest.raises(InputError, match="ProRes is never lossless"):
        VideoEncoding("prores", lossless=True)
    with pytest.raises(InputError, match="h264 cannot write --pix-fmt rgb24"):
        VideoEncoding("h264", pix_fmt="rgb24")
    with pytest.raises(InputError, match="unknown codec 'vp9'"):
        VideoEncoding("vp9")
    assert list_dir(tmp_path) == []


def _gray10_video(path: Path, n: int = 4) -> np.ndarray:
    """A lossless FFV1 yuv420p10le clip of 10-bit gray ramps; returns its ``(n, H, W)`` Y planes."""
    h, w = 32, 48
    ramp = (64 + (np.arange(h * w).reshape(h, w) * 7) % 877).astype(np.uint16)  # not multiples of 4
    planes = np.stack([np.roll(ramp, 3 * i, axis=1) for i in range(n)])
    with av.open(str(path), "w") as out:
        s = out.add_stream("ffv1", rate=10)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p10le"
        for i in range(n):
            f = av.VideoFrame(w, h, "yuv420p10le")
            for k, plane in enumerate(f.planes):
                a = np.frombuffer(plane, np.dtype("<u2")).reshape(plane.height, -1)
                a[:, : plane.width] = planes[i] if k == 0 else 512
            f.pts = i
            for pkt in s.encode(f):
                out.mux(pkt)
        for pkt in s.encode(None):
            out.mux(pkt)
    return planes


def test_ten_bit_input_kept_or_warned(tmp_path: Path, caplog) -> None:
    src_path = tmp_path / "gray10.mkv"
    planes = _gray10_video(src_path)
    with open_source(src_path) as src:
        assert src.info.bit_depth == 10
        frames = list(src)
        lumas = list(src.luma(bits=10))
        np.testing.assert_array_equal(np.stack(lumas), planes)
        # FFV1 10-bit given the input's luma: every 10-bit gray level comes back exactly
        out = tmp_path / "out.mkv"
        with caplog.at_level(logging.WARNING, logger="chromaflow"):
            with open_sink(out, src.info, encoding=VideoEncoding("ffv1")) as sink:
                assert sink.bit_depth == 10
                for f, y in zip(frames, lumas):
                    sink.write(f.rgb, f.pts, luma=y)
        assert "-bit samples" not in caplog.text
        with open_source(out) as res:
            np.testing.assert_array_equal(np.stack(list(res.luma(bits=10))), planes)
        # the default H.264 keeps 8 bits: said once
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="chromaflow"):
            with open_sink(tmp_path / "out.mp4", src.info) as sink:
                for f in frames:
                    sink.write(f.rgb, f.pts)
        assert caplog.text.count("the input has 10-bit samples; out.mp4 keeps 8 bits") == 1
        assert "--codec h265, prores or ffv1 keep 10 bits" in caplog.text


@pytest.mark.parametrize("crf", [0, 18])
def test_video_sink_odd_size(tmp_path: Path, crf: int, caplog) -> None:
    frames = [f[:47, :85].copy() for f in make_clip_frames(5)]
    src = ArraySource(frames, fps=10)
    out = tmp_path / "odd.mp4"
    with caplog.at_level(logging.WARNING, logger="chromaflow"):
        with open_sink(out, src.info, crf=crf) as sink:
            for f in src:
                sink.write(f.rgb, f.pts)
    if crf:
        assert "odd side" in caplog.text
    got = read_frames(out)
    assert len(got) == 5
    assert got[0].shape == (47, 85, 3)
    with open_source(out) as res:
        assert (res.info.width, res.info.height, res.info.n_frames) == (85, 47, 5)
    for g, f in zip(got, frames):
        d = np.abs(gray_of(g).astype(int) - gray_of(f).astype(int))
        assert (d <= (1 if crf == 0 else 6)).mean() >= 0.99


def test_frame_dir_sink_names(tmp_path: Path) -> None:
    info = ArraySource([np.zeros((8, 10, 3), np.uint8)] * 3).info
    out = tmp_path / "frames"
    imgs = [np.full((8, 10, 3), 40 * i, np.uint8) for i in range(3)]
    with open_sink(out, info) as sink:
        assert isinstance(sink, FrameDirSink)
        sink.write(imgs[0], 0, "shot_a")
        sink.write(imgs[1], 1, "shot_b")
        sink.write(imgs[2], 2, None)
    assert list_dir(tmp_path) == ["frames"]
    assert list_dir(out) == ["frame_000002.png", "shot_a.png", "shot_b.png"]
    np.testing.assert_array_equal(read_frames(out / "shot_b.png")[0], imgs[1])


def test_frame_dir_sink_writes_the_audio_beside_the_frames(clips, tmp_path: Path, caplog) -> None:
    out = tmp_path / "frames"
    with caplog.at_level(logging.INFO, logger="chromaflow"):
        written = _write_through(clips.gray_audio_video, out)
    assert list_dir(tmp_path) == ["frames"]
    assert list_dir(out) == ["audio.m4a"] + [f"frame_{i:06d}.png" for i in range(len(written))]
    # every packet copied unchanged, at its own time; and the log says where it went
    assert audio_packets(out / "audio.m4a") == audio_packets(clips.gray_audio_video)
    assert audio_times(out / "audio.m4a") == audio_times(clips.gray_audio_video)
    assert f"the audio is in {out / 'audio.m4a'}" in caplog.text
    assert "re-encoding" not in caplog.text


def test_frame_dir_sink_replaces_existing_dir(tmp_path: Path) -> None:
    out = tmp_path / "frames"
    out.mkdir()
    (out / "old.png").write_bytes(b"old")
    info = ArraySource([np.zeros((8, 10, 3), np.uint8)]).info
    with open_sink(out, info, overwrite=True) as sink:
        sink.write(np.zeros((8, 10, 3), np.uint8), 0, "new")
    assert list_dir(out) == ["new.png"]
    assert list_dir(tmp_path) == ["frames"]


def test_image_sink(tmp_path: Path) -> None:
    info = ArraySource([np.zeros((8, 10, 3), np.uint8)]).info
    img = np.random.default_rng(0).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    with open_sink(tmp_path / "one.png", info) as sink:
        sink.write(img, 0)
    np.testing.assert_array_equal(read_frames(tmp_path / "one.png")[0], img)
    assert list_dir(tmp_path) == ["one.png"]
    info3 = ArraySource([np.zeros((8, 10, 3), np.uint8)] * 3).info
    with pytest.raises(OutputError, match="image file"):
        open_sink(tmp_path / "many.png", info3)


@pytest.mark.parametrize("name", ["out.mp4", "out.mkv", "frames", "single.png"])
def test_sink_left_by_exception_leaves_nothing(clips, tmp_path: Path, name: str) -> None:
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    with open_source(clips.gray_audio_video) as src:
        info = src.info
        if name.endswith(".png"):
            info = ArraySource([clips.frames[0]]).info
        with pytest.raises(RuntimeError, match="boom"):
            with open_sink(out_dir / name, info, audio_from=clips.gray_audio_video) as sink:
                for f in src:
                    sink.write(f.rgb, f.pts)
                    if f.index == (0 if name.endswith(".png") else 3):
                        break
                raise RuntimeError("boom")
    assert list_dir(out_dir) == []


def test_sink_abort_keeps_existing_output(clips, tmp_path: Path) -> None:
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"previous result")
    with open_source(clips.gray_video) as src:
        with pytest.raises(KeyboardInterrupt):
            with open_sink(out, src.info, overwrite=True) as sink:
                for f in src:
                    sink.write(f.rgb, f.pts)
                raise KeyboardInterrupt
    assert list_dir(tmp_path) == ["keep.mp4"]
    assert out.read_bytes() == b"previous result"


def test_check_output_path(clips, tmp_path: Path) -> None:
    existing = tmp_path / "exists.mp4"
    existing.write_bytes(b"x")
    with pytest.raises(OutputError, match="exists"):
        check_output_path(existing, overwrite=False)
    assert check_output_path(existing, overwrite=True) == existing

    with pytest.raises(OutputError, match="folder does not exist"):
        check_output_path(tmp_path / "nope" / "out.mp4", overwrite=False)

    with pytest.raises(OutputError, match=r"\.xyz"):
        check_output_path(tmp_path / "out.xyz", overwrite=False)

    # The input itself is refused even with overwrite.
    with pytest.raises(OutputError, match="input itself"):
        check_output_path(clips.gray_video, overwrite=True, input_path=clips.gray_video)
    with pytest.raises(OutputError, match="input itself"):
        check_output_path(clips.frame_dir, overwrite=True, input_path=clips.frame_dir)

    for ok in ["out.mp4", "out.MOV", "out.mkv", "out.avi", "frames", "one.png", "one.jpg"]:
        assert check_output_path(tmp_path / ok, overwrite=False) == tmp_path / ok
    assert list_dir(tmp_path) == ["exists.mp4"]

"""Rebuild the sample clip shipped in chromaflow/data/ (run once by maintainers).

Source: ``vtest.avi`` from Debian's ``opencv-doc`` package (OpenCV samples,
Apache-2.0 / BSD-3-Clause):

    apt-get download opencv-doc && dpkg -x opencv-doc_*.deb /tmp/ocv
    python scripts/make_sample.py /tmp/ocv/usr/share/doc/opencv-doc/examples/data/vtest.avi

Writes ``chromaflow/data/sample_pedestrians.mp4`` (the first 80 frames,
384x288, converted to gray, H.264, with a synthesized chime track so the
audio pass-through can be seen) and ``sample_pedestrians_ref0.png`` (frame 0
in color, the demo's reference).
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

N_FRAMES = 80
SIZE = (384, 288)
AUDIO_RATE = 22050


def chime(seconds: float) -> np.ndarray:
    """A soft two-tone chime every second: float32 mono in [-1, 1]."""
    t = np.arange(int(seconds * AUDIO_RATE)) / AUDIO_RATE
    phase = t % 1.0
    env = np.exp(-phase * 6.0) * 0.25
    return (env * (np.sin(2 * np.pi * 660 * t) + 0.5 * np.sin(2 * np.pi * 990 * t))).astype(np.float32)


def main(src: str) -> None:
    out_dir = Path(__file__).resolve().parents[1] / "chromaflow" / "data"
    cap = av.open(src)
    stream = cap.streams.video[0]
    fps = Fraction(stream.average_rate)
    frames = []
    for frame in cap.decode(stream):
        frames.append(cv2.resize(frame.to_ndarray(format="rgb24"), SIZE, interpolation=cv2.INTER_AREA))
        if len(frames) == N_FRAMES:
            break
    cap.close()
    cv2.imwrite(str(out_dir / "sample_pedestrians_ref0.png"), cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR))

    out = av.open(str(out_dir / "sample_pedestrians.mp4"), "w")
    v = out.add_stream("libx264", rate=fps)
    v.width, v.height, v.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
    v.options = {"crf": "20", "preset": "slow"}
    a = out.add_stream("aac", rate=AUDIO_RATE)
    a.layout = "mono"
    for i, rgb in enumerate(frames):
        gray = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        f = av.VideoFrame.from_ndarray(gray, format="rgb24")
        f.pts = i
        for p in v.encode(f):
            out.mux(p)
    for p in v.encode(None):
        out.mux(p)
    samples = chime(N_FRAMES / float(fps))
    step = 1024
    for i in range(0, len(samples), step):
        chunk = samples[i : i + step][None, :]
        af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
        af.sample_rate = AUDIO_RATE
        af.pts = i
        for p in a.encode(af):
            out.mux(p)
    for p in a.encode(None):
        out.mux(p)
    out.close()


if __name__ == "__main__":
    main(sys.argv[1])

"""Offline detectors and segmenters on gray frames: ONNX (onnxruntime) and TFLite (ai-edge-litert) models.

Each class wraps one published model of the model store
(:mod:`chromaflow.store`, names in ``manifest.toml``) and turns a gray frame
into plain arrays: boxes with COCO labels, per-class probability maps,
face boxes, body landmarks.  They know nothing of prompts; the grounders
(:mod:`chromaflow.guidance.grounders`) decide which words they can ground.
Every model is given the gray frame replicated to three channels, in its
own input convention (size, layout, scaling; see each class), as
load-tested in ``../shared/models/README.md``.

Runtimes: ONNX files run on ``onnxruntime`` (CPU, or CUDA when the runtime's
device is a GPU and the CUDA provider is installed); TFLite files on
``ai-edge-litert``'s interpreter.  Both are the optional extra
``chromaflow[grounding]``; without them, or without a model file, the
grounders that need it are skipped with one warning.

Arrays: ``gray`` ``(H, W)`` ``uint8``; segmenters' probabilities ``(C, h, w)``
``float32`` in ``[0, 1]`` at the model's resolution (:func:`to_frame` resizes
one to the frame); boxes ``(x0, y0, x1, y1)`` in frame pixels.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from chromaflow.errors import InputError, NotAvailableError

log = logging.getLogger("chromaflow")

__all__ = [
    "COCO_CLASSES", "VOC_CLASSES", "PARTS_CLASSES", "ROAD_CLASSES", "Detection", "load_model",
    "CocoDetector", "VocSegmenter", "PersonSegmenter", "PartsSegmenter", "RoadSegmenter", "FaceDetector",
    "PoseLandmarks", "missing_runtime", "to_frame",
]

COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
PARTS_CLASSES = ("skin", "clothes", "hair")
ROAD_CLASSES = ("background", "road", "curb", "mark")


def missing_runtime(kind: str) -> str | None:
    """The pip package a model kind (``onnx`` / ``tflite``) needs when it is not installed, else ``None``."""
    import importlib.util

    if kind == "onnx":
        return None if importlib.util.find_spec("onnxruntime") else "onnxruntime"
    return None if importlib.util.find_spec("ai_edge_litert") else "ai-edge-litert"


class _Onnx:
    """An onnxruntime session: ``run({name: array}) -> [outputs]`` (thread-safe)."""

    def __init__(self, path: Path, threads: int, device: str) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        # no busy-waiting between runs: the engine's torch threads share the cores
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        self.inputs = [i.name for i in self.session.get_inputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, feeds)


class _TFLite:
    """An ai-edge-litert interpreter: ``run([arrays]) -> [outputs]`` (one call at a time)."""

    def __init__(self, path: Path, threads: int, device: str) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads or None)
        self.interpreter.allocate_tensors()
        self._in = self.interpreter.get_input_details()
        self._out = self.interpreter.get_output_details()
        self._lock = threading.Lock()

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            for d, a in zip(self._in, arrays):
                self.interpreter.set_tensor(d["index"], np.ascontiguousarray(a, dtype=d["dtype"]))
            self.interpreter.invoke()
            return [self.interpreter.get_tensor(d["index"]).copy() for d in self._out]


def load_model(name: str, threads: int = 0, device: str = "cpu"):
    """The model-store file ``name`` as a runnable session (ONNX or TFLite, by its suffix).

    Raises:
        NotAvailableError: the runtime package or the file is missing (one line: what to install or fetch).
        InputError: the file fails its checksum, or the runtime cannot load it (corrupt).
    """
    from chromaflow.store import default_store

    store = default_store()
    entry = store.entry(name)
    kind = "tflite" if entry.file.endswith(".tflite") else "onnx"
    package = missing_runtime(kind)
    if package:
        raise NotAvailableError(f"model {name} needs the Python package {package} (pip install \"chromaflow[grounding]\")")
    path = store.path(name, download=True, progress=True)
    try:
        return (_TFLite if kind == "tflite" else _Onnx)(path, threads, device)
    except Exception as exc:  # noqa: BLE001 - a runtime's load error becomes one line
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"model {name} at {path} cannot be loaded ({kind}): {text[:160]}") from None


def _rgb(gray: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Gray ``(H, W)`` uint8 -> ``(h, w, 3)`` float32 in [0, 255] at ``size = (w, h)``."""
    small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA if gray.shape[1] > size[0] else cv2.INTER_LINEAR)
    return np.repeat(small[..., None].astype(np.float32), 3, axis=2)


def to_frame(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A ``(h, w)`` map back to the frame's ``(H, W)`` (bilinear), clipped to [0, 1]."""
    H, W = shape
    return np.clip(cv2.resize(prob.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


# ------------------------------------------------------------------------- detection


@dataclass(frozen=True)
class Detection:
    """One detected instance.

    Attributes:
        label: class name (``"car"``).
        score: detector confidence in [0, 1].
        box: ``(x0, y0, x1, y1)`` in frame pixels.
    """

    label: str
    score: float
    box: tuple[float, float, float, float]


class CocoDetector:
    """DEIMv2 (HGNetv2) COCO 80-class detector (``deimv2_femto_coco``, 416 px; ``deimv2_atto_coco``, 320 px).

    Input ``images`` ``(1, 3, S, S)`` RGB in [0, 1] and ``orig_target_sizes``
    ``(1, 2)`` = (W, H); outputs labels, boxes (xyxy, frame pixels), scores
    (post-processing inside the model).
    """

    def __init__(self, session, size: int = 416, min_score: float = 0.35) -> None:
        self.session, self.size, self.min_score = session, size, min_score

    def __call__(self, gray: np.ndarray) -> list[Detection]:
        H, W = gray.shape
        x = (_rgb(gray, (self.size, self.size)) / 255.0).transpose(2, 0, 1)[None].astype(np.float32)
        labels, boxes, scores = self.session.run({"images": x, "orig_target_sizes": np.array([[W, H]], np.int64)})
        out = []
        for lab, box, score in zip(labels[0], boxes[0], scores[0]):
            if float(score) >= self.min_score and 0 <= int(lab) < len(COCO_CLASSES):
                x0, y0, x1, y1 = (float(v) for v in box)
                x0, x1 = max(0.0, min(x0, x1)), min(float(W), max(x0, x1))
                y0, y1 = max(0.0, min(y0, y1)), min(float(H), max(y0, y1))
                if x1 - x0 >= 2 and y1 - y0 >= 2:
                    out.append(Detection(COCO_CLASSES[int(lab)], float(score), (x0, y0, x1, y1)))
        return sorted(out, key=lambda d: -d.score)


class VocSegmenter:
    """DeepLabv3 MobileNetV2, 21 Pascal VOC classes (``deeplabv3_voc``).

    Input ``(1, 257, 257, 3)`` NHWC RGB scaled to ``x / 127.5 - 1``; output
    ``(1, 257, 257, 21)`` logits.  Returns ``(21, 257, 257)`` class
    probabilities at the model's resolution (:func:`to_frame` brings one to the frame).
    """

    def __init__(self, session) -> None:
        self.session = session

    def __call__(self, gray: np.ndarray) -> np.ndarray:
        x = (_rgb(gray, (257, 257)) / 127.5 - 1.0)[None].astype(np.float32)
        logits = self.session.run({self.session.inputs[0]: x})[0][0]
        e = np.exp(logits - logits.max(-1, keepdims=True))
        return np.ascontiguousarray((e / e.sum(-1, keepdims=True)).transpose(2, 0, 1), dtype=np.float32)


class PersonSegmenter:
    """MediaPipe selfie segmentation (``selfie_segmentation``, 256 x 256; ``..._landscape``, 144 x 256).

    Input ``(1, h, w, 3)`` RGB in [0, 1]; output ``(1, h, w, 1)`` person
    probability.  Returns ``(H, W)``.
    """

    def __init__(self, session, size: tuple[int, int] = (256, 256)) -> None:
        self.session, self.size = session, size  # (w, h)

    def __call__(self, gray: np.ndarray) -> np.ndarray:
        x = (_rgb(gray, self.size) / 255.0)[None].astype(np.float32)
        return to_frame(self.session.run([x])[0][0, ..., 0], gray.shape)


class PartsSegmenter:
    """PAN (MobileNetV3-small) skin / clothes / hair segmentation (``skin_clothes_hair``).

    Input ``(1, 3, 512, 512)`` RGB with ImageNet mean and std; output
    ``(1, 3, 512, 512)`` per-class sigmoid (skin, clothes, hair).  Returns
    ``(3, 512, 512)`` at the model's resolution.
    """

    _MEAN = np.array([0.485, 0.456, 0.406], np.float32)
    _STD = np.array([0.229, 0.224, 0.225], np.float32)

    def __init__(self, session) -> None:
        self.session = session

    def __call__(self, gray: np.ndarray) -> np.ndarray:
        x = ((_rgb(gray, (512, 512)) / 255.0 - self._MEAN) / self._STD).transpose(2, 0, 1)[None].astype(np.float32)
        out = self.session.run({self.session.inputs[0]: x})[0][0]
        if out.min() < 0.0 or out.max() > 1.0:  # logits, not probabilities
            out = 1.0 / (1.0 + np.exp(-out))
        return np.ascontiguousarray(out[:3], dtype=np.float32)


class RoadSegmenter:
    """OpenVINO road-segmentation-adas-0001: background, road, curb, mark (``road_segmentation``).

    Input ``(1, 512, 896, 3)`` NHWC BGR in [0, 255]; output ``(1, 512, 896, 4)``
    class probabilities.  Returns ``(4, 512, 896)`` at the model's resolution.
    """

    def __init__(self, session) -> None:
        self.session = session

    def __call__(self, gray: np.ndarray) -> np.ndarray:
        x = _rgb(gray, (896, 512))[None].astype(np.float32)
        prob = self.session.run({self.session.inputs[0]: x})[0][0]
        if prob.min() < 0.0 or prob.max() > 1.0:
            e = np.exp(prob - prob.max(-1, keepdims=True))
            prob = e / e.sum(-1, keepdims=True)
        return np.ascontiguousarray(prob.transpose(2, 0, 1), dtype=np.float32)


# ------------------------------------------------------------------------- faces


def _ssd_anchors(size: int, strides: tuple[int, ...], per_cell: tuple[int, ...]) -> np.ndarray:
    """MediaPipe SSD anchor centres ``(N, 2)`` in [0, 1] (fixed anchor size 1, offset 0.5)."""
    out = []
    for stride, n in zip(strides, per_cell):
        cells = int(np.ceil(size / stride))
        ys, xs = np.mgrid[0:cells, 0:cells]
        centres = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], -1).reshape(-1, 1, 2)
        out.append(np.repeat(centres, n, axis=1).reshape(-1, 2))
    return np.concatenate(out).astype(np.float32)


def _merge_layers(strides: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Consecutive layers of one stride share a grid in MediaPipe's anchor generator: (strides, anchors per cell)."""
    merged: list[list[int]] = []
    for s in strides:
        if merged and merged[-1][0] == s:
            merged[-1][1] += 2
        else:
            merged.append([s, 2])
    return tuple(m[0] for m in merged), tuple(m[1] for m in merged)


class FaceDetector:
    """MediaPipe BlazeFace (``face_detection_short_range``: 128 px, near faces;
    ``face_detection_full_range``: 192 px, faces further away).

    Input ``(1, S, S, 3)`` RGB in [-1, 1]; outputs regressors ``(1, N, 16)``
    (box centre offset, size, 6 keypoints, in input pixels relative to the
    anchor) and scores ``(1, N, 1)`` (logits).  Returns :class:`Detection` s
    labelled ``"face"`` after non-maximum suppression.
    """

    def __init__(self, session, full_range: bool = False, min_score: float = 0.5) -> None:
        self.session, self.min_score = session, min_score
        if full_range:
            self.size, self.anchors = 192, _ssd_anchors(192, (4,), (1,))
        else:
            strides, per = _merge_layers((8, 16, 16, 16))
            self.size, self.anchors = 128, _ssd_anchors(128, strides, per)

    def __call__(self, gray: np.ndarray) -> list[Detection]:
        H, W = gray.shape
        side = max(H, W)  # letterbox to a square, as MediaPipe does, so faces keep their shape
        canvas = np.zeros((side, side), np.uint8)
        oy, ox = (side - H) // 2, (side - W) // 2
        canvas[oy:oy + H, ox:ox + W] = gray
        x = (_rgb(canvas, (self.size, self.size)) / 127.5 - 1.0)[None].astype(np.float32)
        reg, cls = self.session.run([x])
        reg, score = reg[0], 1.0 / (1.0 + np.exp(-np.clip(cls[0, :, 0], -50, 50)))
        keep = score >= self.min_score
        if not keep.any():
            return []
        r, a, s = reg[keep], self.anchors[keep], score[keep]
        cx = r[:, 0] / self.size + a[:, 0]
        cy = r[:, 1] / self.size + a[:, 1]
        w, h = r[:, 2] / self.size, r[:, 3] / self.size
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1) * side
        boxes -= np.array([ox, oy, ox, oy], np.float32)
        out = []
        for i in _nms(boxes, s, 0.3):
            x0, y0, x1, y1 = boxes[i]
            x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(W), x1), min(float(H), y1)
            if x1 - x0 >= 2 and y1 - y0 >= 2:
                out.append(Detection("face", float(s[i]), (float(x0), float(y0), float(x1), float(y1))))
        return out


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    order = list(np.argsort(-scores))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        rest = []
        for j in order:
            xx0, yy0 = max(boxes[i, 0], boxes[j, 0]), max(boxes[i, 1], boxes[j, 1])
            xx1, yy1 = min(boxes[i, 2], boxes[j, 2]), min(boxes[i, 3], boxes[j, 3])
            inter = max(0.0, xx1 - xx0) * max(0.0, yy1 - yy0)
            union = ((boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
                     + (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1]) - inter)
            if union <= 0 or inter / union < iou:
                rest.append(j)
        order = rest
    return keep


# ------------------------------------------------------------------------- body landmarks


class PoseLandmarks:
    """MediaPipe BlazePose full landmarks and person mask on a person crop (``pose_landmark_full``).

    Input ``(1, 256, 256, 3)`` RGB in [0, 1] of a square crop around one
    person; outputs ``(1, 195)``: 39 points x (x, y, z, visibility, presence)
    in crop pixels (the first 33 are the body landmarks: 0 nose, 11/12
    shoulders, 23/24 hips, 25/26 knees, 27/28 ankles), the pose score, and a
    ``(1, 256, 256, 1)`` person mask of the crop.  :meth:`__call__` returns
    ``(landmarks (33, 3) = (x, y, visibility in [0, 1]) in frame pixels,
    mask (H, W) in [0, 1], score in [0, 1])``.
    """

    def __init__(self, session) -> None:
        self.session = session

    def __call__(self, gray: np.ndarray, box: tuple[float, float, float, float]
                 ) -> tuple[np.ndarray, np.ndarray, float]:
        H, W = gray.shape
        x0, y0, x1, y1 = box
        side = 1.25 * max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        # an affine crop (out-of-frame parts black), so the person keeps its shape
        scale = 256.0 / side
        m = np.array([[scale, 0, 128 - cx * scale], [0, scale, 128 - cy * scale]], np.float32)
        crop = cv2.warpAffine(gray, m, (256, 256), flags=cv2.INTER_AREA, borderValue=0)
        x = (np.repeat(crop[..., None], 3, axis=2).astype(np.float32) / 255.0)[None]
        outs = self.session.run([x])
        raw = outs[0].reshape(-1, 5)[:33]
        pts = np.empty((33, 3), np.float32)
        pts[:, 0] = raw[:, 0] / scale + cx - 128 / scale
        pts[:, 1] = raw[:, 1] / scale + cy - 128 / scale
        pts[:, 2] = 1.0 / (1.0 + np.exp(-np.clip(raw[:, 3], -50, 50)))
        score = float(np.asarray(outs[1]).ravel()[0])
        if not 0.0 <= score <= 1.0:
            score = float(1.0 / (1.0 + np.exp(-np.clip(score, -50, 50))))
        crop_mask = np.asarray(outs[2])[0, ..., 0].astype(np.float32)
        if crop_mask.min() < 0.0 or crop_mask.max() > 1.0:
            crop_mask = 1.0 / (1.0 + np.exp(-np.clip(crop_mask, -50, 50)))
        inverse = cv2.invertAffineTransform(m)
        mask = cv2.warpAffine(crop_mask, inverse, (W, H), flags=cv2.INTER_LINEAR, borderValue=0)
        return pts, np.clip(mask, 0.0, 1.0), score

"""A skin prior for the keyframes a colorizer colours: faces' skin pulled towards a plausible skin chroma.

Automatic colorization sometimes gives a face a green, blue or magenta cast: the network cannot
see skin's colour in a gray frame any better than a lawn's.  Offline detectors can see where skin
is: :class:`FaceSkin` finds faces (both BlazeFace models of the model store, near and far) and, in
their boxes, the skin channel of the person-parts segmenter (``skin_clothes_hair``); inside that
soft mask :func:`pull_towards` moves the predicted chroma part of the way to :data:`SKIN_AB`.

Measured by ``scripts/skin_prior.py`` (shipped regression model, gain 1.1; model card): with the
pull at 0.5, the ab RMSE inside the face-skin masks falls from 14.07 to 9.82 on the held-out video
frames (15 of 120 with faces) and from 16.84 to 15.17 on the held-out photos (32 of 270), the PSNR
of those images rises by 0.03 dB, of all images by 0.00 dB, and off-hue skin pixels (hue outside
0-110 degrees) go from 2.5 % to 0.0 %.  Faces only: skin masks inside whole-person masks were
too noisy (a fifth of the ground truth's "skin" pixels there are off-hue: blue clothes, sky).

Needs the grounding runtimes (``pip install "chromaflow[grounding]"``) and three model files
(fetched into the model store, or found in a mirror folder).  Arrays: lightness ``(h, w)`` Lab L
in [0, 100]; chroma ``(h, w, 2)`` Lab ab; masks ``(h, w)`` ``float32`` in [0, 1].
"""

from __future__ import annotations

import threading

import numpy as np

from chromaflow.color.lab import lightness_to_gray8

#: the prior's Lab ab: per training image with a detected face, the mean ground-truth ab of its face
#: skin; the median over the 283 such images of the training split (photos and video frames), by
#: ``scripts/skin_prior.py``
SKIN_AB = (5.8, 8.8)


def pull_towards(ab: np.ndarray, weight: np.ndarray, target_ab, strength: float) -> np.ndarray:
    """``ab`` moved the share ``strength * weight`` of the way to ``target_ab``.

    Args:
        ab: ``(..., h, w, 2)`` Lab ab.
        weight: ``(..., h, w)`` in [0, 1] (0: unchanged).
        target_ab: the ``(a, b)`` to move towards.
        strength: in [0, 1].

    Returns:
        ``float32`` array shaped like ``ab``.
    """
    target = np.asarray(target_ab, np.float32)
    share = (float(strength) * np.clip(weight, 0.0, 1.0))[..., None]
    return (ab + share * (target - ab)).astype(np.float32)


class FaceSkin:
    """The soft face-skin mask of a gray frame (see the module doc); models loaded on first use.

    Args:
        threads: runtime threads (0: the runtime's default).
        device: ``cpu`` or a CUDA device (ONNX models only; TFLite runs on the CPU).
        min_score: face detections below this score are ignored.

    Raises (on first call):
        NotAvailableError: a runtime package or a model file is missing.
    """

    def __init__(self, threads: int = 0, device: str = "cpu", min_score: float = 0.6) -> None:
        self.threads, self.device, self.min_score = threads, device, min_score
        self._models = None
        self._lock = threading.Lock()

    def load(self):
        """The models, loaded now if not yet (raises as the class doc says)."""
        from chromaflow.guidance import detectors as D

        with self._lock:
            if self._models is None:
                parts = D.PartsSegmenter(D.load_model("skin_clothes_hair", self.threads, self.device))
                faces = [D.FaceDetector(D.load_model(name, self.threads, self.device), far, self.min_score)
                         for name, far in (("face_detection_short_range", False), ("face_detection_full_range", True))]
                self._models = (parts, faces)
            return self._models

    def __call__(self, gray: np.ndarray) -> np.ndarray:
        """``(H, W)`` ``uint8`` gray -> ``(H, W)`` ``float32`` weight in [0, 1] (zeros where no face is found)."""
        from chromaflow.guidance.detectors import to_frame

        parts, faces = self.load()
        inside = np.zeros(gray.shape, np.float32)
        for det in (d for f in faces for d in f(gray)):
            x0, y0, x1, y1 = (int(round(v)) for v in det.box)
            inside[y0:y1, x0:x1] = 1.0
        if not inside.any():
            return inside
        skin = np.clip((to_frame(parts(gray)[0], gray.shape) - 0.3) / 0.4, 0.0, 1.0)
        return (skin * inside).astype(np.float32)


class SkinPrior:
    """Applies the prior to keyframe chroma.

    Args:
        strength: share of the way to :data:`SKIN_AB` at full mask weight, in (0, 1].
        finder: ``gray (H, W) uint8 -> (H, W)`` weight; default :class:`FaceSkin`.
    """

    def __init__(self, strength: float, finder=None) -> None:
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"the skin prior's strength must be in (0, 1], got {strength}")
        self.strength = float(strength)
        self.finder = finder or FaceSkin()

    def apply(self, lightness: np.ndarray, ab: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
        """``ab`` with each frame's face skin pulled towards the prior.

        Args:
            lightness: ``(T, h, w)`` Lab L in [0, 100].
            ab: ``(T, h, w, 2)`` Lab ab.
            keep: optional ``(T, h, w)`` in [0, 1]: colours already known (carried along the
                motion); weight 1 is left exactly as it is.

        Returns:
            ``(T, h, w, 2)`` ``float32`` Lab ab.
        """
        out = np.asarray(ab, np.float32).copy()
        for i in range(len(out)):
            gray = lightness_to_gray8(lightness[i])
            weight = self.finder(gray)
            if keep is not None:
                weight = weight * (1.0 - np.clip(keep[i], 0.0, 1.0))
            if weight.any():
                out[i] = pull_towards(out[i], weight, SKIN_AB, self.strength)
        return out

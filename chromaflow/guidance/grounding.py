"""Grounding a prompt's objects in a frame: class activation maps, no clicks.

``"a red car on a grey road"`` names two objects.  Each object word is matched
to ImageNet classes of the frozen EfficientNet-Lite0 classifier
(:meth:`ClassVocabulary.match`): by the class names' head nouns (``car`` is the
head of ``sports car``) and by all-MiniLM-L6-v2 similarity between ``"a photo
of a car"`` and ``"a photo of a <class>"``; the best class and those nearly as
close stand for the word.  In a frame, windows where the classifier gives
those classes too little probability do not show the object; elsewhere its
probabilities pick among the classes, and their class activation maps
(Zhou et al. 2016: the classifier weights applied to the last feature map
before pooling) say where the object is (:func:`class_activation_map`).  The
coarse stride-32 map is refined to luminance edges with the guided filter
(:func:`refine_map`).  ImageNet has no class for people or sky, so:

* people (``man``, ``woman``, ``girl``, ``person``, ...) use the classes that
  show people or what they wear (suit, jersey, jean, groom, ballplayer, ...);
* sky is found without the classifier: bright, smooth regions connected to the
  top of the frame (:func:`sky_mask`).

Object words that match nothing (``road``, ``wall``, ``grass``) are reported by
:attr:`ObjectMatch.grounded` being false, and their colour is not applied.  Masks of different objects do not overlap:
each pixel goes to the object whose normalised map is strongest there.

A named colour becomes hints inside its object's mask
(:func:`object_hints`): the model completes the rest of the frame, and the
temporal engine carries the colours through the shot.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import cv2
import numpy as np
import torch

from chromaflow.color.lab import rgb_to_lab
from chromaflow.color.upsample import guided_upsample
from chromaflow.guidance.prompt import ColorPhrase, ParsedPrompt
from chromaflow.registry import register

#: Words for people: ImageNet has no person class.
PERSON_WORDS = frozenset(
    {"person", "people", "man", "men", "woman", "women", "boy", "boys", "girl", "girls", "child", "children",
     "kid", "kids", "lady", "ladies", "guy", "guys", "gentleman", "player", "players", "figure", "crowd"}
)
#: ImageNet classes that show people or what they wear (first names in the class list).
PERSON_CLASSES = (
    "groom", "scuba diver", "ballplayer", "suit", "jersey", "sweatshirt", "cardigan", "jean", "miniskirt",
    "lab coat", "military uniform", "trench coat", "fur coat", "poncho", "pajama", "swimming trunks", "bikini",
    "maillot", "kimono", "abaya", "academic gown", "gown", "apron", "stole", "vestment", "overskirt", "sarong",
)
#: Words for the sky, found by :func:`sky_mask`.
SKY_WORDS = frozenset({"sky", "skies", "heaven", "heavens"})


@dataclass(frozen=True)
class ImageNetClasses:
    """The 1,000 ImageNet classes in the classifier's output order.

    Attributes:
        wnids: WordNet ids, ``n01440764`` ...
        lemmas: each class's names, first the usual one (``"tench"``).
    """

    wnids: tuple[str, ...]
    lemmas: tuple[tuple[str, ...], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(x[0] for x in self.lemmas)


@lru_cache(maxsize=1)
def imagenet_classes() -> ImageNetClasses:
    """The shipped class list (``chromaflow/data/imagenet_classes.tsv``)."""
    text = resources.files("chromaflow.data").joinpath("imagenet_classes.tsv").read_text(encoding="utf-8")
    wnids, lemmas = [], []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        _, wnid, names = line.split("\t")
        wnids.append(wnid)
        lemmas.append(tuple(n.strip() for n in names.split(",")))
    if len(wnids) != 1000:
        raise RuntimeError(f"imagenet_classes.tsv holds {len(wnids)} classes, expected 1000")
    return ImageNetClasses(tuple(wnids), tuple(lemmas))


@dataclass(frozen=True)
class GroundingOptions:
    """How prompt objects are found.

    Attributes:
        input_side: side, in pixels, at which the classifier reads each window.
        min_similarity: sentence similarity for a class to stand for a word.
        similarity_margin: and a class stands for it only if it is within
            this margin of the word's best class ("dress" is a gown at 0.83,
            not also a wardrobe at 0.74).
        max_classes: most classes per word.
        min_evidence: a window of the frame shows the object when the
            classifier's total probability of the word's classes there is at
            least this; a frame with no such window does not show it.
        superpixels: number of SLIC superpixels the maps are snapped to.
        low, high: a normalised activation under ``low`` is outside the mask,
            over ``high`` fully inside (a linear ramp between).
        hint_strength: confidence of the hints inside a mask (under 1, so the
            model may still adjust them near the mask's border).
        window_scales: the classifier reads the whole frame and half-overlapping
            squares of these fractions of its short side (fewer: faster, coarser maps).
    """

    input_side: int = 320
    min_similarity: float = 0.72
    similarity_margin: float = 0.08
    max_classes: int = 50
    min_evidence: float = 0.03
    superpixels: int = 400
    low: float = 0.6
    high: float = 0.85
    hint_strength: float = 0.9
    window_scales: tuple[float, ...] = (1.0, 0.5)


@dataclass(frozen=True)
class ObjectMatch:
    """What an object word stands for.

    Attributes:
        word: the object as written (``"bow tie"``).
        classes: ImageNet class indices, best first (empty for sky, or if nothing matched).
        similarity: the sentence similarity of each class.
        special: ``"person"``, ``"sky"``, or for the detector grounders
            (:mod:`chromaflow.guidance.grounders`) the candidate classes as
            ``"GROUNDER:CLASS+..."`` (``"voc:dog+coco:dog"``); ``None`` otherwise.
    """

    word: str
    classes: tuple[int, ...]
    similarity: tuple[float, ...]
    special: str | None = None

    @property
    def grounded(self) -> bool:
        return bool(self.classes) or self.special == "sky" or bool(self.special and ":" in self.special)


def _head_noun(name: str) -> str:
    return name.lower().replace("-", " ").split()[-1]


def _singular(word: str) -> str:
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


class ClassVocabulary:
    """Matches object words to ImageNet classes (sentence similarity plus head nouns)."""

    def __init__(self, text_encoder) -> None:
        self.text_encoder = text_encoder
        self.classes = imagenet_classes()
        self._embeddings: np.ndarray | None = None

    @property
    def embeddings(self) -> np.ndarray:
        """``(1000, 384)`` unit embeddings of ``"a photo of a <class name>"`` (computed once)."""
        if self._embeddings is None:
            self._embeddings = self.text_encoder.encode([f"a photo of a {n}" for n in self.classes.names])
        return self._embeddings

    def match(self, word: str, options: GroundingOptions) -> ObjectMatch:
        """The classes that ``word`` (an object phrase, e.g. ``"red car"``'s ``"car"``) stands for."""
        word = " ".join(word.lower().split())
        head = _singular(word.split()[-1]) if word else ""
        if head in SKY_WORDS or word in SKY_WORDS:
            return ObjectMatch(word, (), (), "sky")
        if head in PERSON_WORDS or word in PERSON_WORDS:
            names = self.classes.names
            idx = tuple(names.index(n) for n in PERSON_CLASSES if n in names)
            return ObjectMatch(word, idx, tuple(1.0 for _ in idx), "person")
        query = self.text_encoder.encode([f"a photo of a {word}"])[0]
        sim = self.embeddings @ query
        for i, lemmas in enumerate(self.classes.lemmas):
            tokens = [n.lower().replace("-", " ").split() for n in lemmas]
            if any(t and (t[-1] in (head, word) or " ".join(t) == word) for t in tokens):
                # a class whose name ends in the word ("sports car" for "car") is a kind of it
                sim[i] = max(sim[i], 0.9)
            elif any(head in t[:-1] or any(x.startswith(head) and x != head for x in t) for t in tokens):
                # the word only qualifies another thing ("table lamp", "grasshopper")
                sim[i] -= 0.2
        floor = max(options.min_similarity, float(sim.max()) - options.similarity_margin)
        order = [int(i) for i in np.argsort(-sim)[: options.max_classes] if sim[i] >= floor]
        return ObjectMatch(word, tuple(order), tuple(float(sim[i]) for i in order))


def class_activation_map(head: np.ndarray, fc_weight: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Class activation map of a weighted set of classes.

    Args:
        head: ``(C, h, w)`` the classifier's last feature map (before pooling).
        fc_weight: ``(K, C)`` the classifier weights of the ``K`` classes.
        weights: ``(K,)`` non-negative weight of each class.

    Returns:
        ``(h, w)`` ``float32`` map, ReLU'd and divided by its maximum (all
        zeros if nothing activates).
    """
    cam = np.einsum("k,kc,chw->hw", weights.astype(np.float32), fc_weight.astype(np.float32), head.astype(np.float32))
    cam = np.maximum(cam, 0.0)
    peak = float(cam.max())
    return (cam / peak).astype(np.float32) if peak > 0 else np.zeros_like(cam, np.float32)


def refine_map(coarse: np.ndarray, gray: np.ndarray, segments: np.ndarray | None = None) -> np.ndarray:
    """Bring a coarse map in ``[0, 1]`` to the size of ``gray``, snapped to object boundaries.

    Args:
        coarse: ``(h, w)`` map (e.g. stride 32), any size.
        gray: ``(H, W)`` ``uint8`` or float ``[0, 1]`` luminance.
        segments: ``(H, W)`` integer superpixel labels (:func:`superpixels`), or
            ``None`` to use the guided filter alone.

    Returns:
        ``(H, W)`` ``float32`` in ``[0, 1]``: the map resized bilinearly, then
        averaged inside each superpixel (so it follows luminance edges), then
        smoothed along edges by the guided filter.
    """
    H, W = gray.shape
    full = cv2.resize(coarse.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)
    if segments is not None:
        n = int(segments.max()) + 1
        mean = np.bincount(segments.ravel(), full.ravel(), n) / np.maximum(np.bincount(segments.ravel(), None, n), 1)
        full = mean[segments].astype(np.float32)
    small = cv2.resize(full, (max(1, W // 2), max(1, H // 2)), interpolation=cv2.INTER_AREA)
    return np.clip(guided_upsample(small[..., None], gray, radius=2, eps=1e-3)[..., 0], 0.0, 1.0)


def superpixels(gray: np.ndarray, count: int = 400) -> np.ndarray:
    """SLIC superpixels of a gray frame: ``(H, W)`` ``int`` labels from 0 (deterministic)."""
    from skimage.segmentation import slic

    g = gray.astype(np.float32) / 255.0 if gray.dtype == np.uint8 else gray.astype(np.float32)
    return slic(g, n_segments=count, compactness=0.08, channel_axis=None, start_label=0).astype(np.int64)


def square_windows(height: int, width: int, scales: Sequence[float] = (1.0, 0.5)) -> list[tuple[int, int, int, int]]:
    """The whole frame plus half-overlapping squares of ``scale`` times its short side.

    Returns:
        ``(y0, y1, x0, x1)`` boxes, the whole frame first; a small object fills
        more of a small square than of the frame, so the classifier notices it
        and its activation map is sharper there.
    """
    boxes = [(0, height, 0, width)]

    def starts(length: int, side: int) -> list[int]:
        if length - side < side // 4:
            return [max(0, (length - side) // 2)]
        n = int(np.ceil((length - side) / (side / 2))) + 1  # evenly spread, half overlapping at most
        return [round(x) for x in np.linspace(0, length - side, n)]

    for scale in scales:
        side = max(32, round(min(height, width) * scale))
        for y in starts(height, side):
            for x in starts(width, side):
                box = (y, min(height, y + side), x, min(width, x + side))
                if box not in boxes:
                    boxes.append(box)
    return boxes


def sky_mask(gray: np.ndarray) -> np.ndarray:
    """Sky as bright, smooth regions touching the top of the frame.

    Args:
        gray: ``(H, W)`` ``uint8`` or float ``[0, 1]`` luminance.

    Returns:
        ``(H, W)`` ``float32`` mask in ``[0, 1]`` (zeros if no such region).
    """
    g = gray.astype(np.float32) / 255.0 if gray.dtype == np.uint8 else gray.astype(np.float32)
    H, W = g.shape
    k = max(3, (min(H, W) // 40) | 1)
    mean = cv2.blur(g, (k, k))
    std = np.sqrt(np.maximum(cv2.blur(g * g, (k, k)) - mean * mean, 0.0))
    candidate = ((std < 0.035) & (mean > 0.45)).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(candidate, connectivity=4)
    top = max(1, H // 20)
    keep = np.zeros(n, bool)
    for i in range(1, n):
        touches_top = bool((labels[:top] == i).any())
        keep[i] = touches_top and stats[i, cv2.CC_STAT_AREA] >= 0.02 * H * W
    mask = keep[labels].astype(np.float32)
    if not mask.any():
        return mask
    return np.clip(guided_upsample(cv2.resize(mask, (max(1, W // 4), max(1, H // 4)), interpolation=cv2.INTER_AREA)[..., None], g)[..., 0], 0.0, 1.0)


@dataclass(frozen=True)
class GroundedObject:
    """One named object in one frame.

    Attributes:
        phrase: the prompt's (colour, object) pair.
        match: the classes the object word stands for.
        mask: ``(H, W)`` ``float32`` in ``[0, 1]``; zeros where it was not found.
        evidence: the classifier's total probability of the matched classes in
            this frame (1 for the sky when a sky region was found).
        classes: names of the classes that made the map, strongest first.
        grounder: the grounder whose mask this is (``"cam"``, ``"coco"``, ...; empty when not found).
    """

    phrase: ColorPhrase
    match: ObjectMatch
    mask: np.ndarray
    evidence: float
    classes: tuple[str, ...]
    grounder: str = ""

    @property
    def found(self) -> bool:
        return bool(self.mask.any())


@dataclass(frozen=True)
class Grounding:
    """The prompt's objects in one frame, and the hints they give.

    Attributes:
        objects: one per object the prompt gives a colour (:func:`object_phrases`).
        hint_ab: ``(H, W, 2)`` ``float32`` Lab ab of the named colours.
        hint_conf: ``(H, W)`` ``float32`` confidence in ``[0, 1]`` (0: no hint).
    """

    objects: tuple[GroundedObject, ...]
    hint_ab: np.ndarray
    hint_conf: np.ndarray


#: ``on_grounding(frame_index, gray (h, w) uint8, grounding)``: told of each frame's grounding
GroundingCallback = Callable[[int, np.ndarray, Grounding], None]


def object_hints(
    masks: np.ndarray, colors_rgb: np.ndarray, strength: float = 0.9, core: float = 0.5,
    max_chroma: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Turn object masks and their named colours into chroma hints.

    Args:
        masks: ``(K, H, W)`` masks in ``[0, 1]`` that do not overlap.
        colors_rgb: ``(K, 3)`` ``uint8`` sRGB named colours.
        strength: hint confidence where a mask is 1.
        core: mask value under which a pixel gets no hint (the uncertain border
            is left to the model).
        max_chroma: cap on each colour's chroma ``|ab|``, hue kept (``None``: none).

    Returns:
        ``(ab (H, W, 2), conf (H, W))`` ``float32``: the named colour's Lab ab
        (its lightness is the frame's own, so only ab is hinted) and
        ``strength * mask`` inside the core, 0 elsewhere.
    """
    K, H, W = masks.shape
    ab = np.zeros((H, W, 2), np.float32)
    conf = np.zeros((H, W), np.float32)
    if K == 0:
        return ab, conf
    rgb = np.asarray(colors_rgb, np.uint8).reshape(K, 3)
    if max_chroma is not None:
        rgb = np.stack([plausible_rgb(c, max_chroma) for c in rgb])
    lab = rgb_to_lab(rgb.reshape(1, K, 3)).reshape(K, 3)
    best = masks.argmax(axis=0)
    value = masks.max(axis=0)
    inside = value >= core
    ab[inside] = lab[best[inside], 1:]
    conf[inside] = strength * value[inside]
    return ab, conf


_OK_M1 = np.array([[0.4122214708, 0.5363325363, 0.0514459929], [0.2119034982, 0.6806995451, 0.1073969566],
                   [0.0883024619, 0.2817188376, 0.6299787005]], np.float64)
_OK_M2 = np.array([[0.2104542553, 0.7936177850, -0.0040720468], [1.9779984951, -2.4285922050, 0.4505937099],
                   [0.0259040371, 0.7827717662, -0.8086757660]], np.float64)


def _srgb_to_oklab(rgb: np.ndarray) -> np.ndarray:
    c = np.asarray(rgb, np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return _OK_M2 @ np.cbrt(_OK_M1 @ lin)


def _oklab_to_srgb(lab: np.ndarray) -> np.ndarray:
    lms = (np.linalg.inv(_OK_M2) @ lab) ** 3
    lin = np.clip(np.linalg.inv(_OK_M1) @ lms, 0.0, 1.0)
    c = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)
    return np.clip(np.rint(c * 255.0), 0, 255).astype(np.uint8)


def plausible_rgb(rgb: np.ndarray, max_chroma: float) -> np.ndarray:
    """A named colour brought to at most ``max_chroma`` (CIE Lab ab units), hue kept in OKLab
    (``(3,)`` ``uint8`` sRGB in and out).

    Everyday colour words name pure CSS colours where things are far less
    saturated.  Lowering the chroma at a constant OKLab hue keeps the colour
    what people call it: pure blue (#0000ff) becomes a denim blue, where
    scaling its CIE Lab ab at Lab's hue angle would turn it violet.
    """
    ok = _srgb_to_oklab(rgb)
    for k in np.linspace(1.0, 0.0, 51):
        mixed = _oklab_to_srgb(np.array([ok[0], ok[1] * k, ok[2] * k]))
        lab = rgb_to_lab(mixed.reshape(1, 1, 3))[0, 0]
        if float(np.hypot(lab[1], lab[2])) <= max_chroma:
            return mixed
    return _oklab_to_srgb(np.array([ok[0], 0.0, 0.0]))


def object_phrases(prompt: ParsedPrompt) -> list[ColorPhrase]:
    """The phrases that name an object, one per object: an object given two
    colours keeps the first (the conflict is reported by the prompt check)."""
    seen: dict[str, ColorPhrase] = {}
    for p in prompt.phrases:
        if p.object and p.object not in seen:
            seen[p.object] = p
    return list(seen.values())


class Grounder(ABC):
    """Finds a prompt's objects in gray frames (a ``grounder`` backend).

    Attributes:
        name: the backend's name.
        hint_strength: confidence of the hints inside a found mask; tracked
            masks count where their carried confidence reaches half of it.
    """

    name: str = "grounder"
    hint_strength: float = 0.9

    @abstractmethod
    def matches(self, prompt: ParsedPrompt) -> list[ObjectMatch]:
        """What each object the prompt gives a colour stands for (one per :func:`object_phrases`)."""

    @abstractmethod
    def ground(self, gray: np.ndarray, prompt: ParsedPrompt) -> Grounding:
        """The prompt's objects in one ``(h, w)`` ``uint8`` gray frame, and their hints."""

    def describe(self, matches: Sequence[ObjectMatch]) -> list[str]:
        """One line per object word for the log (what it matched, or that it cannot be grounded)."""
        return describe_matches(matches)


class PromptGrounder(Grounder):
    """Finds a prompt's objects in frames with the frozen classifier (class activation maps).

    Args:
        encoder: the frozen :class:`~chromaflow.models.efficientnet.EfficientNetLite0Features`.
        text_encoder: a :class:`~chromaflow.models.text.TextEncoder` (or
            anything with ``encode(list[str]) -> (M, 384)`` unit vectors).
        options: :class:`GroundingOptions`.
    """

    name = "cam"

    def __init__(self, encoder: torch.nn.Module, text_encoder, options: GroundingOptions | None = None) -> None:
        self.encoder = encoder
        self.vocabulary = ClassVocabulary(text_encoder)
        self.options = options or GroundingOptions()
        self.hint_strength = self.options.hint_strength
        self._matches: dict[str, ObjectMatch] = {}

    def match(self, word: str) -> ObjectMatch:
        """:meth:`ClassVocabulary.match`, cached per word."""
        if word not in self._matches:
            self._matches[word] = self.vocabulary.match(word, self.options)
        return self._matches[word]

    def matches(self, prompt: ParsedPrompt) -> list[ObjectMatch]:
        """The match of every object the prompt gives a colour."""
        return [self.match(p.object) for p in object_phrases(prompt)]

    @torch.no_grad()
    def _classify_windows(self, gray: np.ndarray) -> list[tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]]:
        """``[(box, head (1280, h, w), probabilities (1000,))]`` for each of :func:`square_windows`."""
        from chromaflow.models.efficientnet import gray_input

        g = gray.astype(np.float32) / 255.0 if gray.dtype == np.uint8 else gray.astype(np.float32)
        out = []
        for box in square_windows(*g.shape, scales=self.options.window_scales):
            y0, y1, x0, x1 = box
            crop = g[y0:y1, x0:x1]
            # read at up to twice the crop's size: upsampling further adds no detail
            s = min(self.options.input_side, max(224, 2 * max(crop.shape))) / max(crop.shape)
            size = (max(32, round(crop.shape[1] * s)), max(32, round(crop.shape[0] * s)))
            small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
            device = next(self.encoder.parameters()).device
            head = self.encoder.head_features(gray_input(torch.from_numpy(small)[None].to(device)))
            prob = torch.softmax(self.encoder.fc(head.mean(dim=(2, 3))), -1)[0]
            out.append((box, head[0].float().cpu().numpy(), prob.float().cpu().numpy()))
        return out

    def _object_map(self, windows, match: ObjectMatch, shape: tuple[int, int]) -> tuple[np.ndarray, float, tuple[str, ...]]:
        """Coarse activation of a matched object over the frame, its evidence, the classes that made it."""
        o = self.options
        idx = np.array(match.classes)
        fc = self.encoder.fc.weight.detach().numpy()[idx]
        H, W = shape
        canvas = np.zeros((max(1, H // 8), max(1, W // 8)), np.float32)
        totals = [float(prob[idx].sum()) for _, _, prob in windows]
        evidence, strongest = max(totals), np.zeros(len(idx))
        for ((y0, y1, x0, x1), head, prob), total in zip(windows, totals):
            if total < o.min_evidence:
                continue
            p_c = prob[idx]
            strongest = np.maximum(strongest, p_c)
            # each window's map counts as much as the object is recognised there
            cam = class_activation_map(head, fc, p_c / max(total, 1e-12)) * (total / evidence)
            ys, xs = slice(y0 // 8, max(y0 // 8 + 1, y1 // 8)), slice(x0 // 8, max(x0 // 8 + 1, x1 // 8))
            h, w = canvas[ys, xs].shape
            canvas[ys, xs] = np.maximum(canvas[ys, xs], cv2.resize(cam, (w, h), interpolation=cv2.INTER_LINEAR))
        peak = float(canvas.max())
        if peak <= 0:
            return canvas, evidence, ()
        names = self.vocabulary.classes.names
        used = tuple(names[i] for i, p in sorted(zip(idx, strongest), key=lambda x: -x[1]) if p > 0.1 * strongest.max())
        return canvas / peak, evidence, used

    def ground(self, gray: np.ndarray, prompt: ParsedPrompt) -> Grounding:
        """Masks and hints of ``prompt``'s objects in one frame.

        Args:
            gray: ``(H, W)`` ``uint8`` luminance (any size; the masks have its size).
            prompt: the parsed prompt.

        Returns:
            :class:`Grounding`.
        """
        phrases = object_phrases(prompt)
        H, W = gray.shape
        if not phrases:
            return Grounding((), np.zeros((H, W, 2), np.float32), np.zeros((H, W), np.float32))
        o = self.options
        windows, segments = None, None
        maps, evidence, used = [], [], []
        for p in phrases:
            m = self.match(p.object)
            if m.special == "sky":
                sky = sky_mask(gray)
                maps.append(sky)
                evidence.append(1.0 if sky.any() else 0.0)
                used.append(())
                continue
            if not m.classes:
                maps.append(np.zeros((H, W), np.float32))
                evidence.append(0.0)
                used.append(())
                continue
            if windows is None:
                windows = self._classify_windows(gray)
            coarse, ev, names = self._object_map(windows, m, (H, W))
            if not names:
                maps.append(np.zeros((H, W), np.float32))
            else:
                if segments is None:
                    segments = superpixels(gray, o.superpixels)
                maps.append(refine_map(coarse, gray, segments))
            evidence.append(ev)
            used.append(names)
        stack = np.stack(maps)
        winner = stack.argmax(axis=0)
        masks = np.clip((stack - o.low) / max(o.high - o.low, 1e-6), 0.0, 1.0)
        masks *= winner[None] == np.arange(len(maps))[:, None, None]
        masks = masks.astype(np.float32)
        objects = tuple(
            GroundedObject(p, self.match(p.object), masks[k], evidence[k], used[k], "cam" if masks[k].any() else "")
            for k, p in enumerate(phrases)
        )
        hint_ab, hint_conf = object_hints(masks, np.stack([p.rgb for p in phrases]), o.hint_strength)
        return Grounding(objects, hint_ab, hint_conf)


def describe_matches(matches: Sequence[ObjectMatch]) -> list[str]:
    """One line per object word: what it was matched to, or that it could not be grounded."""
    names = imagenet_classes().names
    lines = []
    for m in matches:
        if m.special == "sky":
            lines.append(f"'{m.word}': found as bright smooth regions at the top of the frame")
        elif m.classes:
            shown = ", ".join(names[i] for i in m.classes[:4]) + (", ..." if len(m.classes) > 4 else "")
            lines.append(f"'{m.word}': ImageNet classes {shown}")
        else:
            lines.append(f"'{m.word}': no ImageNet class matches, so its colour is not applied")
    return lines


@register("grounder", "cam", options=GroundingOptions,
          description="class activation maps of the ImageNet classifier on the gray frame, snapped to "
                      "superpixels; sky as bright smooth regions at the top (no extra weights)")
def _make_cam_grounder(options: GroundingOptions, runtime) -> PromptGrounder:
    return PromptGrounder(runtime.encoder(), runtime.text_encoder(), options)

"""Grounders built on offline detectors and segmenters, and the combined grounder ``auto``.

Each grounder declares the words it can ground (:attr:`ClassGrounder.classes`:
a class key and its names, synonyms and plural forms) and turns one class
into a soft mask in a frame with an evidence score (:meth:`ClassGrounder.locate`):

========  ================================================================  =========================
grounder  classes                                                           model (model store)
========  ================================================================  =========================
coco      the 80 COCO classes (car, dog, cup, bottle, chair, tie, ball ...)  DEIMv2 boxes, refined to
                                                                            masks along luminance
                                                                            edges (GrabCut)
voc       20 Pascal VOC classes (pixel masks)                               DeepLabv3 MobileNetV2
person    people (man, woman, girl, crowd ...)                              DEIMv2 person boxes +
                                                                            BlazePose person masks
parts     skin, hands, hair; upper-body clothes (shirt, sweater, jacket),   skin/clothes/hair PAN,
          lower-body clothes (jeans, trousers, skirt), whole outfits        inside each person, split
          (dress, suit) and faces                                           at the hips (BlazePose),
                                                                            faces by BlazeFace
road      road, street, lane marks, curb                                    road-segmentation-adas
sky       the sky                                                           the bright-smooth-top rule
cam       any ImageNet class (the last fallback)                            class activation maps
========  ================================================================  =========================

The combined grounder ``auto`` (the default) matches each object word to
the classes of every grounder (:func:`match_word`: names, synonyms, plural
forms, the head noun of "sports car", and all-MiniLM-L6-v2 similarity) and,
in each frame, takes the mask of the candidate with the best evidence; a
word no detector knows falls back to the class activation maps.  Grounders
whose runtime (``onnxruntime``, ``ai-edge-litert``: ``chromaflow[grounding]``)
or model file is missing are left out with one warning naming what is
missing; the prompt still works through the fallback.

Instance words (:func:`instances_of`) say which instances a phrase means:
"a girl in a blue dress" is one person (the most prominent:
:func:`person_prominence`), "the boy on the left in a white t-shirt" the
person in the left half, different person words different people
(:meth:`FrameCache.people`), "two men in grey suits" everyone; "a blue mug"
is one detection, "red cups" all of them.  In close-ups, where the detector
misses people on gray frames, they come from the selfie segmenter.

Masks of different objects do not overlap: where two overlap the smaller
(more specific: a shirt inside a person) keeps the pixel.  Arrays: ``gray``
``(H, W)`` ``uint8``; masks ``(H, W)`` ``float32`` in ``[0, 1]``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from chromaflow.color.upsample import guided_upsample
from chromaflow.errors import ChromaflowError
from chromaflow.guidance import detectors as D
from chromaflow.guidance.grounding import (
    GroundedObject,
    Grounder,
    Grounding,
    GroundingOptions,
    ObjectMatch,
    PromptGrounder,
    _singular,
    object_hints,
    object_phrases,
    sky_mask,
)
from chromaflow.guidance.prompt import ParsedPrompt
from chromaflow.registry import register

log = logging.getLogger("chromaflow")

__all__ = ["DetectorGroundingOptions", "FrameCache", "ClassGrounder", "AutoGrounder", "match_word",
           "refine_box", "CLASS_WORDS"]

# ---------------------------------------------------------------------------- vocabularies

_COCO_SYNONYMS = {
    "bicycle": ("bike", "cycle"), "car": ("automobile", "sedan", "taxi", "cab", "jeep", "hatchback"),
    "motorcycle": ("motorbike", "scooter", "moped"), "airplane": ("plane", "aeroplane", "aircraft", "jet", "airliner"),
    "bus": ("coach",), "train": ("locomotive", "tram", "railcar"), "truck": ("lorry", "van", "pickup", "minivan"),
    "boat": ("ship", "yacht", "canoe", "kayak", "sailboat", "rowboat", "ferry"), "traffic light": ("traffic signal",),
    "fire hydrant": ("hydrant",), "bird": ("parrot", "duck", "pigeon", "goose", "seagull", "gull", "swan", "sparrow",
    "goldfinch", "finch", "robin", "eagle", "owl", "chicken", "hen", "rooster"), "cat": ("kitten", "kitty"),
    "dog": ("puppy", "pup", "hound", "terrier", "retriever", "poodle", "husky"), "horse": ("pony", "foal", "stallion"),
    "sheep": ("lamb", "ram"), "cow": ("cattle", "bull", "calf", "ox", "oxen"), "backpack": ("rucksack",),
    "umbrella": ("parasol",), "handbag": ("bag", "purse"), "tie": ("necktie", "bow tie", "bowtie"),
    "suitcase": ("luggage",), "sports ball": ("ball", "football", "soccer ball", "basketball", "tennis ball",
    "volleyball", "baseball"), "baseball bat": ("bat",), "baseball glove": ("glove", "mitt"),
    "tennis racket": ("racket", "racquet"), "wine glass": ("glass", "wineglass", "goblet"),
    "cup": ("mug", "teacup", "coffee cup"), "chair": ("seat", "stool", "armchair"), "couch": ("sofa", "settee"),
    "potted plant": ("plant", "houseplant", "flowerpot", "pot plant"), "dining table": ("table", "tabletop"),
    "tv": ("television", "monitor", "screen", "tv set"), "cell phone": ("phone", "smartphone", "cellphone", "mobile"),
    "oven": ("stove", "cooker"), "refrigerator": ("fridge",), "teddy bear": ("teddy", "stuffed animal"),
    "hair drier": ("hair dryer", "hairdryer"), "donut": ("doughnut",), "remote": ("remote control",),
    "laptop": ("notebook computer",), "book": ("books",), "bench": ("park bench",),
}
_VOC_WORDS = {
    "aeroplane": ("airplane", "plane", "aeroplane", "aircraft", "jet"), "bicycle": ("bicycle", "bike"),
    "bird": ("bird",) + _COCO_SYNONYMS["bird"], "boat": ("boat",) + _COCO_SYNONYMS["boat"], "bottle": ("bottle",),
    "bus": ("bus", "coach"), "car": ("car",) + _COCO_SYNONYMS["car"], "cat": ("cat", "kitten", "kitty"),
    "chair": ("chair", "seat", "stool", "armchair"), "cow": ("cow",) + _COCO_SYNONYMS["cow"],
    "diningtable": ("table", "dining table", "tabletop"), "dog": ("dog",) + _COCO_SYNONYMS["dog"],
    "horse": ("horse", "pony", "foal", "stallion"), "motorbike": ("motorcycle", "motorbike", "scooter", "moped"),
    "pottedplant": ("plant", "potted plant", "houseplant", "flowerpot"), "sheep": ("sheep", "lamb", "ram"),
    "sofa": ("sofa", "couch", "settee"), "train": ("train", "locomotive", "tram"),
    "tvmonitor": ("tv", "television", "monitor", "screen"),
}
PERSON_WORDS = (
    "person", "people", "man", "woman", "boy", "girl", "child", "kid", "lady", "guy", "gentleman", "player",
    "crowd", "baby", "toddler", "teenager", "bride", "groom", "soldier", "worker", "dancer", "figure", "human",
    "men", "women", "children", "pedestrian", "runner", "rider", "juggler", "actor", "actress", "mother",
    "father", "grandmother", "grandfather", "policeman", "skater",
)
_PARTS_WORDS = {
    "skin": ("skin", "hand", "arm", "leg", "finger", "neck", "shoulder", "skin tone", "complexion"),
    "hair": ("hair", "beard", "moustache", "mustache", "ponytail", "braid", "curls", "hairdo"),
    "face": ("face", "cheek", "cheeks", "lips", "forehead"),
    "upper": ("shirt", "t-shirt", "tshirt", "tee", "blouse", "top", "sweater", "jumper", "pullover", "jacket",
              "coat", "hoodie", "sweatshirt", "vest", "cardigan", "jersey", "tank top", "polo", "blazer", "tunic",
              "parka", "raincoat", "anorak", "overcoat"),
    "lower": ("jeans", "trousers", "pants", "shorts", "skirt", "leggings", "slacks", "chinos", "denim",
              "sweatpants", "joggers", "overalls"),
    "dress": ("dress", "gown", "frock", "sundress", "robe", "kimono", "apron"),
    "outfit": ("clothes", "clothing", "outfit", "suit", "costume", "uniform", "tuxedo", "jumpsuit", "tracksuit"),
}
_ROAD_WORDS = {
    "road": ("road", "street", "roadway", "highway", "asphalt", "tarmac", "lane", "motorway", "avenue",
             "driveway", "parking lot"),
    "curb": ("curb", "kerb", "curbside"),
    "mark": ("road marking", "lane marking", "markings", "zebra crossing", "crosswalk"),
}

#: every grounder's class names and words (the vocabulary ``auto`` matches words against)
CLASS_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "coco": {c: (c,) + _COCO_SYNONYMS.get(c, ()) for c in D.COCO_CLASSES if c != "person"},
    "voc": {k: v for k, v in _VOC_WORDS.items()},
    "person": {"person": PERSON_WORDS},
    "parts": _PARTS_WORDS,
    "road": _ROAD_WORDS,
    "sky": {"sky": ("sky", "skies", "heaven", "clouds", "cloud")},
}
#: the more specific grounder first when two know a word equally well
_PRIORITY = ("parts", "person", "voc", "coco", "road", "sky")


def _norm(text: str) -> str:
    words = text.lower().replace("-", " ").split()
    if words:
        words[-1] = _singular(words[-1])
    return " ".join(words)


# ---------------------------------------------------------------------------- instance words

_PLURAL_PEOPLE = frozenset({"people", "men", "women", "children", "kids", "crowd", "persons", "boys", "girls",
                            "players", "dancers", "soldiers", "pedestrians", "everyone", "family", "couple"})
_NUMBERS = frozenset({"two", "three", "four", "five", "six", "several", "many", "some", "all", "both", "few"})
_SINGULAR_ARTICLES = frozenset({"a", "an", "one", "the", "this", "that"})
_PLACES = {"left": "left", "right": "right", "middle": "middle", "center": "middle", "centre": "middle",
           "foreground": "front", "front": "front", "background": "back", "back": "back"}


@dataclass(frozen=True)
class Instances:
    """Which instances of a class a prompt phrase means.

    Attributes:
        one: a single instance ("a girl in a blue dress", "the car on the
            left"): the most prominent one, or the one at ``where``;
            ``False``: every instance found ("red cups", "two men in suits").
        where: ``"left"``, ``"right"``, ``"middle"``, ``"front"`` (largest) or
            ``"back"`` (smallest), or ``None``.
        who: the person word a garment or body part belongs to (``"girl"``), or
            ``None``; phrases of the same single person share that person.
    """

    one: bool = False
    where: str | None = None
    who: str | None = None


def _place(words: Sequence[str]) -> str | None:
    """The first position named in ``words`` ("on the left", "in the background": a place word after "the")."""
    return next((_PLACES[w] for i, w in enumerate(words) if w in _PLACES and i > 0 and words[i - 1] == "the"), None)


def _worn(obj: str | None) -> bool:
    words = (obj or "").split()
    return bool(words) and (" ".join(words) in _WORN or _norm(words[-1]) in _WORN)


def instances_of(phrase, previous: Instances | None = None) -> Instances:
    """What a :class:`~chromaflow.guidance.prompt.ColorPhrase` says of its instances.

    A garment or body part belongs to the person named before it ("a girl in
    a blue dress": one person; "two men in grey suits": all) at the position
    named with that person ("the man on the left in a red shirt"); a garment
    joined by "and" / "with" keeps the person of the phrase before ("... and
    blue jeans"); a garment alone ("a red shirt") is every person's.  Any other
    object is one instance when it is a singular noun after an article ("a blue
    mug", "the car on the right") and all of them otherwise ("red cups", "green
    grass").  ``previous`` is the previous phrase's answer (``None`` for the first).
    """
    before = [w for w in phrase.before if w.isalpha()]
    after = [w for w in phrase.after if w.isalpha()]
    if _worn(phrase.object):
        people = [i for i, w in enumerate(before) if w in PERSON_WORDS or w in _PLURAL_PEOPLE]
        if people:
            k = people[-1]
            word = before[k]
            plural = word in _PLURAL_PEOPLE or _singular(word) != word and word not in ("boss", "actress")
            counted = k > 0 and before[k - 1] in _NUMBERS
            where = _place(before[k:]) or _place(after)  # "a man in a red shirt on the left"
            one = not (plural or counted)
            return Instances(one=one, where=where, who=f"{word} {where or ''}".strip() if one else None)
        if previous is not None and previous.who and before[:1] in (["and"], ["with"]):
            return previous
        return Instances(one=False)  # a garment word alone does not say whose: every person's
    obj = (phrase.object or "").split()
    if not obj:
        return Instances()
    # the words of this object's own clause: after the last "and" / "with" before it
    cut = max((i + 1 for i, w in enumerate(before) if w in ("and", "with")), default=0)
    own = before[cut:]
    where = _place([*own, *after])
    singular = _singular(obj[-1]) == obj[-1]
    article = bool(own) and own[-1] in _SINGULAR_ARTICLES and not any(w in _NUMBERS for w in own)
    return Instances(one=singular and (article or where is not None), where=where)


#: words of the person-parts grounder (garments, skin, hair, faces)
_WORN = frozenset(_norm(n) for names in _PARTS_WORDS.values() for n in names)


@dataclass(frozen=True)
class Candidate:
    """One class a word may stand for.

    Attributes:
        grounder: the grounder's name (``"coco"``).
        key: its class key (``"cup"``).
        score: how well the word matches in [0, 1] (1: a name or synonym; less: similarity).
        how: ``"name"``, ``"head noun"`` or ``"similar"``.
    """

    grounder: str
    key: str
    score: float
    how: str


def match_word(word: str, grounders: Sequence[str], text_encoder=None, min_similarity: float = 0.86,
               vocabulary: dict[str, dict[str, tuple[str, ...]]] = CLASS_WORDS) -> list[Candidate]:
    """The classes of ``grounders`` that an object word stands for, best first.

    A word equal to a class name or synonym (plural forms folded) scores 1;
    one whose last word is a name (``"sports car"`` -> car) 0.95; otherwise
    a class whose name is at least ``min_similarity`` similar in the sentence
    model (``"a photo of a <word>"``) scores its similarity times 0.95.
    """
    w = _norm(word)
    head = w.split()[-1] if w else ""
    found: dict[tuple[str, str], Candidate] = {}
    for g in grounders:
        for key, names in vocabulary.get(g, {}).items():
            normed = {_norm(n) for n in names}
            if w in normed:
                found[(g, key)] = Candidate(g, key, 1.0, "name")
            elif head in normed and " " in w:
                found[(g, key)] = Candidate(g, key, 0.95, "head noun")
    if not found and text_encoder is not None and w:
        pairs = [(g, key, n) for g in grounders for key, names in vocabulary.get(g, {}).items() for n in names]
        if pairs:
            emb = _name_embeddings(text_encoder, tuple(p[2] for p in pairs))
            q = text_encoder.encode([f"a photo of a {w}"])[0]
            sims = emb @ q
            for (g, key, _), s in zip(pairs, sims):
                if s >= min_similarity:
                    c = Candidate(g, key, 0.95 * float(s), "similar")
                    if (g, key) not in found or found[(g, key)].score < c.score:
                        found[(g, key)] = c
    order = {g: i for i, g in enumerate(_PRIORITY)}
    return sorted(found.values(), key=lambda c: (-round(c.score, 3), order.get(c.grounder, 99)))


_EMBED_CACHE: dict[tuple[int, tuple[str, ...]], np.ndarray] = {}
_EMBED_LOCK = threading.Lock()


def _name_embeddings(text_encoder, names: tuple[str, ...]) -> np.ndarray:
    key = (id(text_encoder), names)
    with _EMBED_LOCK:
        if key not in _EMBED_CACHE:
            _EMBED_CACHE[key] = text_encoder.encode([f"a photo of a {n}" for n in names])
        return _EMBED_CACHE[key]


# ---------------------------------------------------------------------------- masks from boxes


def refine_box(gray: np.ndarray, box: tuple[float, float, float, float], method: str = "grabcut",
               prior: np.ndarray | None = None, side: int = 128) -> np.ndarray:
    """A soft object mask ``(H, W)`` in [0, 1] from a detection box, along the luminance edges.

    Args:
        gray: ``(H, W)`` ``uint8``.
        box: ``(x0, y0, x1, y1)`` pixels.
        method: ``"grabcut"`` (OpenCV GrabCut in the box, on a copy at most
            ``side`` px across, 2 iterations) or ``"box"`` (the box itself,
            feathered).
        prior: optional ``(H, W)`` probability of the object (a segmenter's),
            used as GrabCut's probable foreground/background where confident.

    Returns:
        The mask, zero outside the box, feathered by the guided filter.
    """
    H, W = gray.shape
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
    mask = np.zeros((H, W), np.float32)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return mask
    if method == "box":
        mask[y0:y1, x0:x1] = 1.0
    else:
        pad = max(4, round(0.1 * max(x1 - x0, y1 - y0)))
        cx0, cy0, cx1, cy1 = max(0, x0 - pad), max(0, y0 - pad), min(W, x1 + pad), min(H, y1 + pad)
        crop = gray[cy0:cy1, cx0:cx1]
        s = min(1.0, float(side) / max(crop.shape))
        small = cv2.resize(crop, (max(8, round(crop.shape[1] * s)), max(8, round(crop.shape[0] * s))),
                           interpolation=cv2.INTER_AREA)
        sh, sw = small.shape
        gc = np.full((sh, sw), cv2.GC_BGD, np.uint8)
        bx0, by0 = int((x0 - cx0) * s), int((y0 - cy0) * s)
        bx1, by1 = max(bx0 + 2, int(np.ceil((x1 - cx0) * s))), max(by0 + 2, int(np.ceil((y1 - cy0) * s)))
        gc[by0:by1, bx0:bx1] = cv2.GC_PR_FGD
        # the box's centre is most likely the object: its pixels near the centre's median gray level
        # (not the cups standing in the middle of a table's box)
        iy0, iy1 = by0 + (by1 - by0) // 3, by1 - (by1 - by0) // 3
        ix0, ix1 = bx0 + (bx1 - bx0) // 3, bx1 - (bx1 - bx0) // 3
        if iy1 > iy0 and ix1 > ix0:
            centre = small[iy0:iy1, ix0:ix1].astype(np.float32)
            typical = np.abs(centre - np.median(centre)) <= max(12.0, float(np.percentile(
                np.abs(centre - np.median(centre)), 50)))
            gc[iy0:iy1, ix0:ix1][typical] = cv2.GC_FGD
        if prior is not None:
            p = cv2.resize(prior[cy0:cy1, cx0:cx1], (sw, sh), interpolation=cv2.INTER_AREA)
            inside = gc != cv2.GC_BGD
            gc[inside & (p > 0.7)] = cv2.GC_FGD
            gc[inside & (p < 0.05) & (gc != cv2.GC_FGD)] = cv2.GC_PR_BGD
        img = cv2.merge([small, small, small])
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        try:
            cv2.grabCut(img, gc, None, bgd, fgd, 2, cv2.GC_INIT_WITH_MASK)
            fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.float32)
        except cv2.error:  # a degenerate crop (one gray level): keep the box
            fg = (gc != cv2.GC_BGD).astype(np.float32)
        fg[:by0], fg[by1:], fg[:, :bx0], fg[:, bx1:] = 0, 0, 0, 0
        mask[cy0:cy1, cx0:cx1] = cv2.resize(fg, (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_LINEAR)
    return _feather(mask, gray)


def _feather(mask: np.ndarray, gray: np.ndarray) -> np.ndarray:
    """Soften a mask's edge along the luminance (guided filter at half size); keeps zeros far outside."""
    H, W = gray.shape
    if not mask.any():
        return mask.astype(np.float32)
    small = cv2.resize(mask, (max(1, W // 2), max(1, H // 2)), interpolation=cv2.INTER_AREA)
    soft = guided_upsample(small[..., None], gray, radius=2, eps=1e-3)[..., 0]
    near = cv2.dilate((mask > 0.05).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    return np.where(near, np.clip(soft, 0.0, 1.0), 0.0).astype(np.float32)


# ---------------------------------------------------------------------------- the frame's shared evidence


class _Models:
    """The detector and segmenter sessions, loaded once on first use; what failed to load is remembered."""

    def __init__(self, options: DetectorGroundingOptions, runtime) -> None:
        self.options = options
        self.threads = int(getattr(runtime.options, "threads", 0) or 0) if runtime is not None else 0
        self.device = str(runtime.device) if runtime is not None else "cpu"
        self._made: dict[str, object] = {}
        self.failed: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, what: str):
        """The wrapper ``what`` (``coco``, ``voc``, ``parts``, ``road``, ``selfie``, ``face``, ``pose``), or
        ``None`` if unavailable."""
        with self._lock:
            if what in self._made:
                return self._made[what]
            if what in self.failed:
                return None
            o = self.options
            try:
                if what == "coco":
                    size = 320 if "atto" in o.coco_model else 416
                    made = D.CocoDetector(D.load_model(o.coco_model, self.threads, self.device), size, o.min_score)
                elif what == "voc":
                    made = D.VocSegmenter(D.load_model("deeplabv3_voc", self.threads, self.device))
                elif what == "parts":
                    made = D.PartsSegmenter(D.load_model("skin_clothes_hair", self.threads, self.device))
                elif what == "road":
                    made = D.RoadSegmenter(D.load_model("road_segmentation", self.threads, self.device))
                elif what == "selfie":
                    made = D.PersonSegmenter(D.load_model("selfie_segmentation", self.threads, self.device))
                elif what == "face":
                    made = D.FaceDetector(D.load_model("face_detection_full_range", self.threads, self.device),
                                          full_range=True)
                elif what == "pose":
                    made = D.PoseLandmarks(D.load_model("pose_landmark_full", self.threads, self.device))
                else:
                    raise ValueError(what)
            except ChromaflowError as exc:
                self.failed[what] = str(exc)  # reported once, with the others, by the grounder
                return None
            self._made[what] = made
            return made


@dataclass
class FrameCache:
    """One frame and what the models said of it, computed at most once per frame.

    Attributes:
        gray: ``(H, W)`` ``uint8``.
        owners: the single people the prompt names (:attr:`Instances.who`), in prompt order; each
            is a different person of the frame (:meth:`people`).
    """

    gray: np.ndarray
    models: _Models
    owners: tuple[Instances, ...] = ()
    _done: dict[str, object] = field(default_factory=dict)
    _claims: dict[str, int | None] | None = None

    def get(self, what: str):
        """``coco`` detections, ``voc`` / ``parts`` / ``road`` probability stacks, ``selfie`` person
        probability, ``face`` boxes, ``people`` (per person: box, landmarks, mask), or ``None`` when that
        model is unavailable."""
        if what not in self._done:
            if what == "people":
                self._done[what] = self._people()
            else:
                model = self.models.get(what)
                self._done[what] = None if model is None else model(self.gray)
        return self._done[what]

    def people(self, instances: Instances | None = None):
        """The people a phrase means, or ``None`` when the models are unavailable: the person of its
        owner (:meth:`_claim`), or those :func:`pick` chooses by :func:`person_prominence`."""
        people = self.get("people")
        if people is None:
            return None
        if instances is not None and instances.one and instances.who:
            k = self._claim().get(instances.who)
            return [] if k is None else [people[k]]
        return [people[i] for i in self._pick(list(range(len(people))), instances)]

    def _pick(self, indices: list[int], instances: Instances | None) -> list[int]:
        """:func:`pick` among the people ``indices``, by :func:`person_prominence`."""
        people = self.get("people") or []
        return pick(indices, [people[i][0].box for i in indices],
                    [person_prominence(people[i][0].box, people[i][2]) for i in indices], instances,
                    self.gray.shape[1])

    def face_in(self, box) -> tuple[float, float, float, float] | None:
        """The topmost face box inside a person's ``box`` (the person's own, not a child's in front), or ``None``."""
        faces = sorted((f.box for f in self.get("face") or [] if _inside(f.box, box)), key=lambda b: b[1])
        return faces[0] if faces else None

    def _claim(self) -> dict[str, int | None]:
        """Which person each owner is: different owner words are different people ("a girl in a blue
        dress, the boy on the left in white": one person in the frame is the girl, not also the boy).
        Owners without a position choose first (the most prominent), then those with one."""
        if self._claims is None:
            count = len(self.get("people") or [])
            self._claims, taken = {}, set()
            for inst in sorted(self.owners, key=lambda o: o.where is not None):
                if inst.who in self._claims:
                    continue
                chosen = self._pick([i for i in range(count) if i not in taken], inst)
                self._claims[inst.who] = chosen[0] if chosen else None
                taken.update(chosen)
        return self._claims

    def _person_boxes(self, dets) -> tuple[list, bool]:
        """``(detections, from the selfie segmenter)``: the COCO person detections, one per person (a box
        overlapping a stronger one by IoU 0.6 or more is the same person); where there is none, the
        people the selfie segmenter sees (close-ups and head-and-shoulders shots, which the detector
        misses on gray frames), one per blob of 2 % of the frame or more with a face in it (the
        segmenter alone also sees people in cardboard boxes and cartoon rabbits)."""
        boxes = []
        for d in sorted((d for d in dets if d.label == "person"), key=lambda d: -d.score):
            if all(_iou(d.box, b.box) < 0.6 for b in boxes):
                boxes.append(d)
        selfie = None if boxes else self.get("selfie")
        if selfie is None:
            return boxes, False
        H, W = self.gray.shape
        n, labels, stats, _ = cv2.connectedComponentsWithStats((selfie >= 0.5).astype(np.uint8))
        faces = (self.get("face") or []) if n > 1 else []
        for k in range(1, n):
            x, y, w, h, area = stats[k]
            if area >= 0.02 * H * W and any(_inside(f.box, (x, y, x + w, y + h)) for f in faces):
                score = 0.8 * float(selfie[labels == k].mean())
                boxes.append(D.Detection("person", score, (float(x), float(y), float(x + w), float(y + h))))
        return boxes, True

    def _people(self):
        dets = self.get("coco")
        if dets is None:
            return None
        boxes, close_up = self._person_boxes(dets)
        pose = self.models.get("pose") if boxes and not close_up else None
        out = []
        for d in boxes:
            box_mask = _box_mask(d.box, self.gray.shape)
            if close_up:  # seen by the selfie segmenter only: a close-up, where the pose model fails
                out.append((d, None, _feather(self._person_mask(d.box, box_mask), self.gray)))
                continue
            if pose is None:
                o = self.models.options
                out.append((d, None, refine_box(self.gray, d.box, o.refine, side=o.grabcut_side)))
                continue
            pts, mask, score = pose(self.gray, d.box)
            x0, y0, x1, y1 = d.box
            person = mask * box_mask
            if (score < 0.5 or float((person > 0.5).sum()) < 0.2 * (x1 - x0) * (y1 - y0)
                    or not plausible_pose(pts, self.face_in(d.box))):
                person, pts = self._person_mask(d.box, box_mask), None  # pose missed (close-ups, cut-off bodies)
            out.append((d, pts, _feather(person, self.gray)))
        return out

    def _person_mask(self, box, box_mask: np.ndarray) -> np.ndarray:
        """A person's mask without a pose: the selfie segmenter's inside the box where it sees the person
        (it is made for people near the camera), else the box refined along the luminance edges."""
        selfie = self.get("selfie")
        if selfie is not None:
            person = selfie * box_mask
            x0, y0, x1, y1 = box
            if float((person >= 0.5).sum()) >= 0.2 * (x1 - x0) * (y1 - y0):
                return person.astype(np.float32)
        return refine_box(self.gray, box, self.models.options.refine, side=self.models.options.grabcut_side)


# ---------------------------------------------------------------------------- grounders


@dataclass(frozen=True)
class DetectorGroundingOptions:
    """How the detector grounders find prompt objects.

    Attributes:
        coco_model: the COCO detector of the model store: ``deimv2_femto_coco``
            (416 px) or ``deimv2_atto_coco`` (320 px, faster, fewer small objects).
        min_score: detections under this confidence are ignored.
        refine: boxes become masks by ``grabcut`` (along the luminance edges) or ``box``.
        grabcut_side: GrabCut works on a copy of the box at most this many pixels across.
        min_prob: a segmenter's pixel belongs to a class from this probability.
        min_similarity: sentence similarity for a word to stand for a class no
            name or synonym matches (all-MiniLM-L6-v2 puts "tablecloth" at 0.84
            from "table" and "puppy" at 0.85 from "dog", so only near-synonyms pass).
        use: the grounders ``auto`` may use, most specific first.
        hint_strength: confidence of the hints inside a mask.
        max_chroma: the named colour's chroma (Lab ab units) is capped at this,
            keeping its hue: everyday colour words name pure CSS colours
            ("blue" is #0000ff, chroma 134) where real objects are far less
            saturated (blue jeans: about 30-40); its chroma is lowered at a
            constant OKLab hue until it is under the cap
            (:func:`~chromaflow.guidance.grounding.plausible_rgb`); 0 keeps the named chroma.
        cam: options of the class-activation-map fallback (it reads the whole
            frame only, where ``--grounder cam`` alone also reads squares of
            it: on the prompt benchmark the fallback found none of the boxed
            objects either way, and the squares took half of a keyframe's
            grounding time).
    """

    coco_model: str = "deimv2_femto_coco"
    min_score: float = 0.35
    refine: str = "grabcut"
    grabcut_side: int = 128
    min_prob: float = 0.5
    min_similarity: float = 0.86
    use: tuple[str, ...] = ("parts", "person", "voc", "coco", "road", "sky", "cam")
    hint_strength: float = 0.9
    max_chroma: float = 30.0
    cam: GroundingOptions = field(default_factory=lambda: GroundingOptions(window_scales=()))

    def __post_init__(self) -> None:
        if self.refine not in ("grabcut", "box"):
            raise ValueError(f"refine must be grabcut or box, got {self.refine!r}")
        if self.grabcut_side < 16:
            raise ValueError(f"grabcut_side must be at least 16, got {self.grabcut_side}")
        unknown = [g for g in self.use if g not in (*CLASS_WORDS, "cam")]
        if unknown:
            raise ValueError(f"unknown grounder {unknown[0]!r} in use (known: {', '.join([*CLASS_WORDS, 'cam'])})")
        if self.coco_model not in ("deimv2_femto_coco", "deimv2_atto_coco"):
            raise ValueError(f"coco_model must be deimv2_femto_coco or deimv2_atto_coco, got {self.coco_model!r}")


def pick(items: Sequence, boxes: Sequence[tuple[float, float, float, float]], prominence: Sequence[float],
         instances: Instances | None, width: int) -> list:
    """The items (detections, people) a phrase means: all of them, or the one at ``instances.where``,
    or else the most prominent (largest ``prominence``).  ``boxes``: ``(x0, y0, x1, y1)`` pixels.
    "On the left" / "on the right" only take items whose centre is in that half of the frame (the
    girl alone in the right half is not "the boy on the left")."""
    cx = [(b[0] + b[2]) / 2 for b in boxes]
    if instances is not None and instances.where in ("left", "right"):
        side = [i for i in range(len(items)) if (cx[i] < width / 2) == (instances.where == "left")]
        items, boxes, prominence = [items[i] for i in side], [boxes[i] for i in side], [prominence[i] for i in side]
        cx = [cx[i] for i in side]
    if instances is None or not instances.one or len(items) <= 1:
        return list(items)
    area = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
    key = {"left": lambda i: -cx[i], "right": lambda i: cx[i], "middle": lambda i: -abs(cx[i] - width / 2),
           "front": lambda i: area[i], "back": lambda i: -area[i]}.get(instances.where or "", lambda i: prominence[i])
    return [items[max(range(len(items)), key=key)]]


def person_prominence(box, mask: np.ndarray) -> float:
    """How much a person is the subject of a frame: the area of their mask, less towards the sides
    (a child in the middle of a bedroom over a brother half out of the frame at its edge)."""
    W = mask.shape[1]
    off = abs((box[0] + box[2]) / 2 - W / 2) / (W / 2)
    return float((mask >= 0.5).mean()) * (1.0 - 0.8 * min(1.0, off))


class ClassGrounder:
    """One detector or segmenter seen as a grounder of a fixed set of classes (see the module doc)."""

    name = "class"
    #: the models it needs (``_Models`` keys)
    needs: tuple[str, ...] = ()

    def __init__(self, options: DetectorGroundingOptions) -> None:
        self.options = options
        self.classes = CLASS_WORDS.get(self.name, {})

    def describe(self, key: str) -> str:
        return f"{self.name} class '{key}'"

    def locate(self, frame: FrameCache, key: str, instances: Instances | None = None
               ) -> tuple[np.ndarray, float] | None:
        """``(mask (H, W) in [0, 1], evidence in [0, 1])`` of class ``key`` in the frame (of the instances
        :func:`pick` chooses, for grounders that see instances); a zero mask if it is not there; ``None``
        if this grounder's model is unavailable."""
        raise NotImplementedError


class CocoGrounder(ClassGrounder):
    name = "coco"
    needs = ("coco",)

    def locate(self, frame, key, instances=None):
        dets = frame.get("coco")
        if dets is None:
            return None
        H, W = frame.gray.shape
        mask, evidence = np.zeros((H, W), np.float32), 0.0
        mine = [d for d in dets if d.label == key]
        mine = pick(mine, [d.box for d in mine], [d.score for d in mine], instances, W)
        voc_key = _COCO_TO_VOC.get(key)
        prior = None
        if voc_key is not None and "voc" in self.options.use and mine:
            stack = frame.get("voc")
            prior = None if stack is None else D.to_frame(stack[D.VOC_CLASSES.index(voc_key)], (H, W))
        for d in mine:
            mask = np.maximum(mask, refine_box(frame.gray, d.box, self.options.refine, prior,
                                               self.options.grabcut_side))
            evidence = max(evidence, d.score)
        return mask, evidence


_COCO_TO_VOC = {"airplane": "aeroplane", "bicycle": "bicycle", "bird": "bird", "boat": "boat", "bottle": "bottle",
                "bus": "bus", "car": "car", "cat": "cat", "chair": "chair", "cow": "cow",
                "dining table": "diningtable", "dog": "dog", "horse": "horse", "motorcycle": "motorbike",
                "potted plant": "pottedplant", "sheep": "sheep", "couch": "sofa", "train": "train", "tv": "tvmonitor"}


#: VOC class names that COCO spells otherwise
VOC_AS_COCO = {v: k for k, v in _COCO_TO_VOC.items()}


def _class_mask(low: np.ndarray, gray: np.ndarray, min_prob: float) -> tuple[np.ndarray, float]:
    """A segmenter's ``(h, w)`` probability of one class -> ``(soft mask at the frame's size, evidence)``;
    a class on under 0.2 % of the pixels is not there."""
    inside = low >= min_prob
    if inside.sum() < 0.002 * low.size:
        return np.zeros(gray.shape, np.float32), 0.0
    soft = D.to_frame(np.clip((low - 0.3) / 0.4, 0, 1), gray.shape)
    return _feather(soft, gray), float(low[inside].mean())


class VocGrounder(ClassGrounder):
    name = "voc"
    needs = ("voc",)

    def locate(self, frame, key, instances=None):  # semantic classes: no instances
        stack = frame.get("voc")
        if stack is None:
            return None
        k = D.VOC_CLASSES.index(key)
        return _class_mask(stack[k] * (stack.argmax(0) == k), frame.gray, self.options.min_prob)


class PersonGrounder(ClassGrounder):
    name = "person"
    needs = ("coco", "pose", "selfie")

    def locate(self, frame, key, instances=None):
        people = frame.people(instances)
        if people is None:
            return None
        H, W = frame.gray.shape
        mask, evidence = np.zeros((H, W), np.float32), 0.0
        for det, _, m in people:
            mask = np.maximum(mask, m)
            evidence = max(evidence, det.score)
        return mask, evidence


class PartsGrounder(ClassGrounder):
    """Skin, hair, faces and clothes inside each person; clothes split at the hips into upper and lower body."""

    name = "parts"
    needs = ("coco", "pose", "selfie", "parts", "face")

    def locate(self, frame, key, instances=None):
        people = frame.people(instances)
        if people is None:
            return None
        H, W = frame.gray.shape
        mask, evidence = np.zeros((H, W), np.float32), 0.0
        if key == "face":
            faces = frame.get("face")
            for det, pts, person in people:
                boxes = [f.box for f in faces or [] if _inside(f.box, det.box)]
                if not boxes and pts is not None and pts[0, 2] > 0.5:  # no face detection: the head from the pose
                    eye_span = abs(float(pts[2, 0] - pts[5, 0])) + abs(float(pts[7, 0] - pts[8, 0]))
                    r = max(4.0, 0.6 * eye_span)
                    boxes = [(pts[0, 0] - r, pts[0, 1] - 1.2 * r, pts[0, 0] + r, pts[0, 1] + 1.1 * r)]
                for b in boxes:
                    ell = np.zeros((H, W), np.float32)
                    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
                    cv2.ellipse(ell, (int(cx), int(cy)), (max(1, int((b[2] - b[0]) / 2)), max(1, int((b[3] - b[1]) * 0.6))),
                                0, 0, 360, 1.0, -1)
                    mask = np.maximum(mask, _feather(ell * person if person.any() else ell, frame.gray))
                    evidence = max(evidence, det.score)
            return mask, evidence
        stack = frame.get("parts")
        if stack is None:
            return None
        full = {}

        def part(k: int) -> np.ndarray:  # the parts model's map k at the frame's size, once
            if k not in full:
                full[k] = D.to_frame(stack[k], (H, W))
            return full[k]

        for det, pts, person in people:
            inside = person >= 0.5
            if not inside.any():
                continue
            skin, hair = part(0) * person, part(2) * person
            clothes = part(1) * person if key not in ("skin", "hair") else None
            if key == "skin":
                piece = skin
            elif key == "hair":
                piece = hair
            else:
                # clothes: what the parts model calls clothes, or the person's pixels that are not skin or hair,
                # inside the body region the garment covers (from the pose: torso, arms, legs)
                piece = np.maximum(clothes, person * ((skin < 0.5) & (hair < 0.5)) * 0.8)
                region = _garment_region(key, pts, (H, W))
                if region is None:  # no usable pose: horizontal bands of a standing person's box
                    top, hips, feet = _body_lines(det.box, pts, frame.face_in(det.box))
                    rows = np.arange(H, dtype=np.float32)[:, None]
                    lo, hi = {"upper": (top, hips), "lower": (hips, feet)}.get(key, (top, feet))
                    region = ((rows >= lo) & (rows < hi)).astype(np.float32)
                piece = piece * region
            piece = np.where(piece >= self.options.min_prob, piece, 0.0).astype(np.float32)
            if piece.any():
                mask = np.maximum(mask, _feather(piece, frame.gray))
                evidence = max(evidence, det.score * float(piece[piece > 0].mean()))
        return mask, evidence


def _box_mask(box, shape: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` ones in ``box`` widened by 5 % of its longer side."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    out = np.zeros(shape, np.float32)
    pad = round(0.05 * max(x1 - x0, y1 - y0))
    out[max(0, y0 - pad):y1 + pad, max(0, x0 - pad):x1 + pad] = 1.0
    return out


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _inside(inner, outer) -> bool:
    cx, cy = (inner[0] + inner[2]) / 2, (inner[1] + inner[3]) / 2
    return outer[0] <= cx <= outer[2] and outer[1] <= cy <= outer[3]


#: which garment word covers which body parts (``dress``-like words: the torso and the thighs)
_GARMENT_PARTS = {"upper": ("torso", "upper arms"), "lower": ("hips", "legs"),
                  "dress": ("torso", "hips", "thighs"), "outfit": ("torso", "upper arms", "hips", "legs")}


def plausible_pose(pts, face=None) -> bool:
    """Whether 33 BlazePose landmarks ``(x, y, visibility)`` look like a body: the nose and the chin of
    ``face`` (a face box in the person's box, or ``None``) not below the shoulders and, where the hips
    are seen, a torso at least 0.6 shoulder widths long.  On close-ups (a head and shoulders filling the
    frame) the landmark model puts the shoulders at the neck and invents hips just below them; garments
    are then placed from the face instead."""
    if pts is None:
        return False
    if min(pts[11, 2], pts[12, 2]) < 0.5:
        return True  # no shoulders: nothing to check (the garment regions need them anyway)
    shoulder_y = float(pts[[11, 12], 1].mean())
    width = float(np.linalg.norm(pts[11, :2] - pts[12, :2]))
    if face is not None and face[3] > shoulder_y:
        return False
    if pts[0, 2] >= 0.5 and float(pts[0, 1]) > shoulder_y:
        return False
    if min(pts[23, 2], pts[24, 2]) >= 0.5 and float(pts[[23, 24], 1].mean()) - shoulder_y < 0.6 * width:
        return False
    return True


def _garment_region(key: str, pts, shape: tuple[int, int]) -> np.ndarray | None:
    """``(H, W)`` ``float32`` region of a garment from the 33 pose landmarks, or ``None`` when the
    shoulders or hips were not seen.  Limbs are thick segments between joints, the torso the
    shoulder-hip quadrilateral widened by a fifth of the shoulder width."""
    if pts is None or min(pts[[11, 12, 23, 24], 2]) < 0.5:
        return None
    H, W = shape
    out = np.zeros((H, W), np.uint8)
    p = pts[:, :2].astype(np.float32)
    shoulder_w = float(np.linalg.norm(p[11] - p[12]))
    thick = max(2, int(round(0.4 * shoulder_w)))

    def seg(a: int, b: int, width: int = thick) -> None:
        if pts[a, 2] >= 0.5 and pts[b, 2] >= 0.5:
            cv2.line(out, tuple(int(v) for v in p[a]), tuple(int(v) for v in p[b]), 1, width)

    parts = _GARMENT_PARTS[key]
    if "torso" in parts:
        centre = p[[11, 12, 23, 24]].mean(0)
        quad = p[[11, 12, 24, 23]]
        quad = centre + (quad - centre) * 1.2
        cv2.fillPoly(out, [np.round(quad).astype(np.int32)], 1)
    if "upper arms" in parts:
        seg(11, 13)
        seg(12, 14)
    if "hips" in parts:
        centre = p[[23, 24]].mean(0)
        hip = centre + (p[[23, 24]] - centre) * 1.6
        down = np.array([0.0, 0.35 * shoulder_w], np.float32)
        cv2.fillPoly(out, [np.round(np.stack([hip[0], hip[1], hip[1] + down, hip[0] + down])).astype(np.int32)], 1)
    if "legs" in parts:
        for a, b, c in ((23, 25, 27), (24, 26, 28)):
            seg(a, b, int(thick * 1.2))
            seg(b, c)
    if "thighs" in parts:  # a skirt: the upper part of the thighs, widening downwards
        for a, b in ((23, 25), (24, 26)):
            if pts[a, 2] >= 0.5 and pts[b, 2] >= 0.5:
                mid = p[a] + 0.6 * (p[b] - p[a])
                cv2.line(out, tuple(int(v) for v in p[a]), tuple(int(v) for v in mid), 1, int(thick * 1.5))
    return out.astype(np.float32)


def _body_lines(box, pts, face=None) -> tuple[float, float, float]:
    """``(top of the clothes, hip line, bottom of the clothes)`` rows of one person: from the pose
    (shoulders, hips, ankles) where it saw them, else the usual proportions of a standing person's box;
    the clothes start under the chin of a face found in the box (a close-up), at the box's top when
    the box starts at the frame's top with no face (the head out of the frame)."""
    x0, y0, x1, y1 = box
    height = y1 - y0
    top, hips, feet = y0 + 0.15 * height, y0 + 0.5 * height, y0 + 0.95 * height
    if face is not None:
        top = face[3] + 0.15 * (face[3] - face[1])
        hips = max(hips, top + 2.5 * (face[3] - face[1]))  # about 2.5 face heights from chin to hips
    elif y0 <= 2:
        top = y0
    if pts is not None:
        if min(pts[11, 2], pts[12, 2]) > 0.5:
            top = float(min(pts[11, 1], pts[12, 1])) - 0.03 * height
        if min(pts[23, 2], pts[24, 2]) > 0.5:
            hips = float((pts[23, 1] + pts[24, 1]) / 2)
        if max(pts[27, 2], pts[28, 2]) > 0.5:
            feet = float(max(pts[27, 1] if pts[27, 2] > 0.5 else 0, pts[28, 1] if pts[28, 2] > 0.5 else 0))
        else:
            feet = y1
    return top, hips, max(hips + 1.0, feet)


class RoadGrounder(ClassGrounder):
    name = "road"
    needs = ("road",)

    def locate(self, frame, key, instances=None):
        stack = frame.get("road")
        if stack is None:
            return None
        k = ROAD_INDEX[key]
        low = stack[k] + (stack[ROAD_INDEX["mark"]] if key == "road" else 0.0)  # marks are on the road
        return _class_mask(low, frame.gray, self.options.min_prob)


ROAD_INDEX = {name: i for i, name in enumerate(D.ROAD_CLASSES)}


class SkyGrounder(ClassGrounder):
    name = "sky"

    def locate(self, frame, key, instances=None):
        mask = sky_mask(frame.gray)
        return mask, 1.0 if mask.any() else 0.0


_GROUNDERS = {g.name: g for g in (PartsGrounder, PersonGrounder, VocGrounder, CocoGrounder, RoadGrounder, SkyGrounder)}


class AutoGrounder(Grounder):
    """Every available grounder, the best evidence per object and frame (see the module doc).

    Args:
        options: :class:`DetectorGroundingOptions`.
        runtime: device and threads (the sessions' threads follow ``--threads``).
        text_encoder: the sentence model (word similarity); the CAM fallback's too.
        cam: the class-activation-map grounder used for words no detector knows (or ``None``).
        only: restrict to these grounders (a single-grounder backend such as ``--grounder coco``).
    """

    name = "auto"

    def __init__(self, options: DetectorGroundingOptions, runtime=None, text_encoder=None,
                 cam: PromptGrounder | None = None, only: Sequence[str] | None = None) -> None:
        self.options = options
        self.hint_strength = options.hint_strength
        self.text_encoder = text_encoder
        self.cam = cam if "cam" in options.use and (only is None or "cam" in only) else None
        names = [g for g in options.use if g in _GROUNDERS and (only is None or g in only)]
        self.grounders = {g: _GROUNDERS[g](options) for g in names}
        self.models = _Models(options, runtime)
        if only is not None and len(only) == 1:
            self.name = only[0]
        self._matches: dict[str, tuple[list[Candidate], ObjectMatch | None]] = {}
        self._warned_missing = False
        self._reported: set[str] = set()

    # ---- words
    def candidates(self, word: str) -> tuple[list[Candidate], ObjectMatch | None]:
        """What ``word`` stands for: detector classes (best first) and the CAM fallback's match (cached)."""
        if word not in self._matches:
            cands = match_word(word, list(self.grounders), self.text_encoder, self.options.min_similarity)
            cam = None
            if not cands and self.cam is not None:
                cam = self.cam.match(word)
            self._matches[word] = (cands, cam)
        return self._matches[word]

    def matches(self, prompt: ParsedPrompt) -> list[ObjectMatch]:
        """One :class:`ObjectMatch` per object: ``special`` names the grounder(s) that will look for it."""
        out = []
        for p in object_phrases(prompt):
            cands, cam = self.candidates(p.object)
            if cands:
                best = cands[0].score
                use = [c for c in cands if c.score >= best - 0.05]
                out.append(ObjectMatch(p.object, (), tuple(c.score for c in use),
                                       "+".join(f"{c.grounder}:{c.key}" for c in use)))
            elif cam is not None:
                out.append(cam)
            else:
                out.append(ObjectMatch(p.object, (), ()))
        return out

    def describe(self, matches: Sequence[ObjectMatch]) -> list[str]:
        from chromaflow.guidance.grounding import describe_matches

        self._warn_missing()
        lines = []
        for m in matches:
            if m.special and ":" in m.special:
                where = ", ".join(f"{g} ({k})" for g, k in (s.split(":", 1) for s in m.special.split("+")))
                lines.append(f"'{m.word}': {where}")
            elif m.classes or m.special == "sky":
                lines.append(describe_matches([m])[0] + " (class activation maps: no detector knows the word)")
            else:
                lines.append(f"'{m.word}': no grounder knows this word, so its colour is not applied")
        return lines

    def _report_failures(self) -> None:
        """One warning for the models that could not be loaded since the last one (missing, corrupt)."""
        new = [w for w in self.models.failed if w not in self._reported]
        if not new:
            return
        self._reported.update(new)
        if len(new) == 1:
            detail = self.models.failed[new[0]]
        else:
            detail = "; ".join(f"{w}: {self.models.failed[w]}" for w in new)
        fallback = " the words they ground fall back to the class activation maps" if self.cam is not None else ""
        log.warning("prompt grounding without %s:%s (%s)", ", ".join(new), fallback, detail)

    def _warn_missing(self) -> None:
        """One warning naming the grounders that cannot run (runtime package or model file missing)."""
        if self._warned_missing:
            return
        self._warned_missing = True
        missing = []
        for g in self.grounders.values():
            for kind in g.needs:
                pkg = D.missing_runtime("tflite" if kind in ("face", "pose", "selfie") else "onnx")
                if pkg:
                    missing.append(f"{g.name} ({pkg})")
                    break
        if missing:
            log.warning("prompt grounding: %s cannot run: pip install \"chromaflow[grounding]\"; words they know "
                        "fall back to the class activation maps", ", ".join(dict.fromkeys(missing)))

    # ---- frames
    def ground(self, gray: np.ndarray, prompt: ParsedPrompt) -> Grounding:
        """Masks and hints of ``prompt``'s objects in one ``(H, W)`` ``uint8`` frame (see the module doc)."""
        phrases = object_phrases(prompt)
        H, W = gray.shape
        if not phrases:
            return Grounding((), np.zeros((H, W, 2), np.float32), np.zeros((H, W), np.float32))
        of_object, inst = {}, None
        for p in prompt.phrases:  # in prompt order, colour-only phrases included (they end an owner's run)
            inst = instances_of(p, inst)
            if p.object:
                of_object.setdefault(p.object, inst)
        insts = [of_object[p.object] for p in phrases]
        frame = FrameCache(gray, self.models, tuple(i for i in insts if i.one and i.who))
        maps, evidence, used, names = [], [], [], []
        cam_phrases = []
        for i, p in enumerate(phrases):
            inst = insts[i]
            cands, cam = self.candidates(p.object)
            best_mask, best_ev, best_by = np.zeros((H, W), np.float32), 0.0, None
            top = cands[0].score if cands else 0.0
            unavailable = 0
            for c in cands:
                if c.score < top - 0.05:
                    break
                got = self.grounders[c.grounder].locate(frame, c.key, inst)
                if got is None:
                    unavailable += 1
                    continue
                mask, ev = got
                if mask.any() and ev * c.score > best_ev:
                    best_mask, best_ev, best_by = mask, ev * c.score, c
            if cands and unavailable and best_by is None and self.cam is not None:
                cam = self.cam.match(p.object)  # the detectors that know it cannot run: fall back
            if best_by is None and cam is not None and cam.grounded:
                cam_phrases.append(i)
            maps.append(best_mask)
            evidence.append(best_ev)
            used.append((best_by.key,) if best_by else ())
            names.append(best_by.grounder if best_by else "")
        if cam_phrases:
            sub = ParsedPrompt(prompt.text, tuple(phrases[i] for i in cam_phrases))
            g = self.cam.ground(gray, sub)
            for i, obj in zip(cam_phrases, g.objects):
                maps[i], evidence[i], used[i], names[i] = obj.mask, obj.evidence, obj.classes, "cam" if obj.found else ""
        self._report_failures()
        masks = _exclusive(np.stack(maps))
        objects = tuple(
            GroundedObject(p, self._object_match(p.object), masks[k], evidence[k], used[k], names[k])
            for k, p in enumerate(phrases)
        )
        hint_ab, hint_conf = object_hints(masks, np.stack([p.rgb for p in phrases]), self.options.hint_strength,
                                          max_chroma=self.options.max_chroma or None)
        return Grounding(objects, hint_ab, hint_conf)

    def _object_match(self, word: str) -> ObjectMatch:
        cands, cam = self.candidates(word)
        if cands:
            return ObjectMatch(word, (), tuple(c.score for c in cands), "+".join(f"{c.grounder}:{c.key}" for c in cands))
        return cam if cam is not None else ObjectMatch(word, (), ())


def _exclusive(masks: np.ndarray) -> np.ndarray:
    """Masks ``(K, H, W)`` made disjoint: where several are at least 0.5, the one of smallest area keeps the
    pixel (the more specific object); elsewhere each keeps its soft values only where it is the strongest."""
    if len(masks) <= 1:
        return masks.astype(np.float32)
    area = (masks >= 0.5).reshape(len(masks), -1).sum(1).astype(np.float32)
    rank = np.where(area > 0, area, np.inf)
    strong = masks >= 0.5
    # among the strong masks at a pixel, the smallest wins; where none is strong, the largest value wins
    cost = np.where(strong, rank[:, None, None], np.inf)
    winner_strong = cost.argmin(0)
    winner_soft = masks.argmax(0)
    winner = np.where(strong.any(0), winner_strong, winner_soft)
    keep = winner[None] == np.arange(len(masks))[:, None, None]
    return (masks * keep).astype(np.float32)


# ---------------------------------------------------------------------------- registration


def _check(options: DetectorGroundingOptions) -> str | None:
    """Why a single detector grounder cannot run (``auto`` always runs: it falls back)."""
    missing = [p for p in (D.missing_runtime("onnx"), D.missing_runtime("tflite")) if p]
    if missing:
        return f"needs {', '.join(missing)} (pip install \"chromaflow[grounding]\")"
    return None


@register("grounder", "auto", options=DetectorGroundingOptions, licence="Apache-2.0 / MIT (models)",
          description="every detector and segmenter of the model store (COCO, VOC, people and their clothes, "
                      "faces, roads, sky), the best per object; class activation maps for other words (the default)")
def _make_auto(options: DetectorGroundingOptions, runtime) -> AutoGrounder:
    cam = PromptGrounder(runtime.encoder(), runtime.text_encoder(), options.cam) if "cam" in options.use else None
    return AutoGrounder(options, runtime, runtime.text_encoder(), cam)


def _register_single(name: str, description: str) -> None:
    def make(options: DetectorGroundingOptions, runtime) -> AutoGrounder:
        return AutoGrounder(options, runtime, runtime.text_encoder(), None, only=(name,))

    register("grounder", name, options=DetectorGroundingOptions, check=_check if name != "sky" else None,
             description=description)(make)


for _name, _desc in (
    ("coco", "DEIMv2 COCO detector: 80 classes, boxes refined to masks along the luminance edges"),
    ("voc", "DeepLabv3 Pascal VOC segmentation: 20 classes"),
    ("person", "people: DEIMv2 person boxes and BlazePose person masks"),
    ("parts", "skin, hair, faces and clothes of each person (upper / lower body split at the hips)"),
    ("road", "road segmentation: road, curb, lane marks"),
    ("sky", "the sky as bright smooth regions at the top of the frame (no model)"),
):
    _register_single(_name, _desc)


# ---------------------------------------------------------------------------- the same eyes elsewhere

#: label of the sky in :func:`semantic_labels` (after the 21 VOC labels)
SKY_LABEL = len(D.VOC_CLASSES)

_SHARED: dict[int, _Models] = {}
_SHARED_LOCK = threading.Lock()


def shared_models(runtime=None) -> _Models:
    """The detector sessions of one runtime, shared by the matcher and the tag palette (loaded on first use)."""
    key = id(runtime)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = _Models(DetectorGroundingOptions(), runtime)
        return _SHARED[key]


def semantic_labels(gray: np.ndarray, models: _Models) -> np.ndarray | None:
    """``(H, W)`` ``int32`` labels of a gray frame: the Pascal VOC class of each pixel (1-20: person, dog,
    car, ...; 0: none of them) and :data:`SKY_LABEL` for the sky; ``None`` when the VOC model is not here."""
    voc = models.get("voc")
    if voc is None:
        return None
    H, W = gray.shape
    low = voc(gray)
    labels = cv2.resize(low.argmax(0).astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST).astype(np.int32)
    labels[(labels == 0) & (sky_mask(gray) >= 0.5)] = SKY_LABEL
    return labels


def semantic_labeller(runtime=None):
    """A ``gray -> labels or None`` callable for :class:`~chromaflow.guidance.correspondence.SemanticMatcher`,
    or ``None`` when the segmenter's runtime is not installed (then references match without labels)."""
    if D.missing_runtime("onnx"):
        return None
    models = shared_models(runtime)

    def label(gray: np.ndarray) -> np.ndarray | None:
        out = semantic_labels(gray, models)
        if out is None and "voc" in models.failed and not getattr(label, "warned", False):
            label.warned = True
            log.info("reference matching without semantic labels: %s", models.failed["voc"])
        return out

    return label

"""Benchmark modes: how each mode turns a ground-truth clip into conditions.

Every mode colorizes the clip's grayscale version (OpenCV RGB2GRAY):

* ``gray``: no colorization, output = input (calibration row).
* ``auto``: no guidance at all.
* ``exemplar``: the ground-truth first frame as ``--reference --reference-frame 0``.
* ``palette``: the 5-colour palette (k-means in Lab) of the ground-truth first frame.
* ``prompt``: the clip's prompt from a prompts file (:mod:`chromaflow.bench.prompts`).

Ablations of the temporal engine, with the ``exemplar`` conditions:

* ``exemplar-warp``: forward warping from the reference only, no correction;
* ``exemplar-forward``: forward propagation with correction, no backward fusion;
* ``exemplar-modelfill``: the full engine with the embedded model as the fill
  step instead of Levin et al.'s optimisation.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from chromaflow.guidance.conditions import Conditions, Reference
from chromaflow.guidance.palette import palette_from_image
from chromaflow.pipeline.engine import EngineOptions
from chromaflow.pipeline.options import Choice, ColorizeOptions, load_config
from chromaflow.runtime import RuntimeOptions

MODES = ("gray", "auto", "exemplar", "palette", "prompt", "exemplar-warp", "exemplar-forward", "exemplar-modelfill")

#: Engine options of each ablation mode (other modes use the defaults).
ABLATIONS = {
    "exemplar-warp": EngineOptions(backward=False, correct=False),
    "exemplar-forward": EngineOptions(backward=False),
}
#: Fill step of each mode (default: Levin's optimisation).
FILL_OF_MODE = {"exemplar-modelfill": "model"}


def options_for_mode(mode: str, weights: str | None = None, seed: int = 0,
                     config: str | Path | None = None) -> ColorizeOptions:
    """The run configuration a mode runs with (on the CPU; ``weights``: other embedded-model weights;
    ``config``: a run TOML whose settings every mode starts from, e.g. ``[grounder.auto] refine = "box"``;
    an ablation mode's engine options and fill step replace its own)."""
    base = ColorizeOptions(runtime=RuntimeOptions(device="cpu"))
    if config is not None:
        base = load_config(config, base)
    options = replace(base, seed=seed, engine=ABLATIONS.get(mode, base.engine),
                      fill=FILL_OF_MODE.get(mode, base.fill)).resolved()
    if weights:
        model = replace(options.colorizer.options, weights=weights)
        options = replace(options, colorizer=Choice("model", model))
        if options.fill.name == "model":
            options = replace(options, fill=Choice("model", replace(options.fill.options,
                                                                     model=replace(options.fill.options.model,
                                                                                   weights=weights))))
    return options


def conditions_for_mode(mode: str, first_gt_frame: np.ndarray, seed: int = 0, prompt: str | None = None) -> Conditions:
    """Conditions of a benchmark mode, built from the clip's first ground-truth frame (and its prompt)."""
    if mode == "prompt":
        if not prompt:
            raise ValueError("the prompt mode needs the clip's prompt")
        return Conditions(prompt=prompt, seed=seed)
    if mode.startswith("exemplar"):
        return Conditions(references=(Reference(first_gt_frame, frame=0),), seed=seed)
    if mode == "palette":
        return Conditions(palette=palette_from_image(first_gt_frame, seed=seed), seed=seed)
    if mode in ("auto", "gray"):
        return Conditions(seed=seed)
    raise ValueError(f"unknown benchmark mode {mode!r}; known: {', '.join(MODES)}")

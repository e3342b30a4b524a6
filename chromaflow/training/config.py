"""Training configuration: a TOML file read into typed dataclasses.

Example (``configs/diffusion.toml``)::

    [data]
    photos = "../shared/data/photos"
    cache_dir = "runs/cache"

    [model]
    widths = [32, 64, 128, 192]

    [train]
    kind = "diffusion"     # or "regression" (L1 baseline, same network)
    steps = 3000
    seed = 0
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from chromaflow.errors import InputError
from chromaflow.models.chroma_unet import ChromaUNetConfig

KINDS = ("diffusion", "regression")
LOSSES = ("l1", "mse", "psnr")


@dataclass(frozen=True)
class DataConfig:
    """Where the photos are and how they are cut.

    Attributes:
        photos: folder of colour photos.
        cache_dir: where the encoder-feature cache is kept (shared by runs
            with the same data settings).
        val_fraction: share of photos held out for validation.
        split_seed: seed of the split (photos and frames).
        crops_per_photo: random training crops per photo.
        crop_size: crop side in pixels (multiple of 32).
        frames: folder of colour video frames named ``<clip>_<index>.jpg``
            (``""``: photos only).  Split by clip, never by frame.
        crops_per_frame: random training crops per video frame.
        frames_val_fraction: share of clips held out for validation.
        frames_share: share of each training batch drawn from the frames
            (the rest from the photos).
        pack: a training pack folder (:mod:`chromaflow.training.pack`,
            ``scripts/gpu_pack.py``) to train from instead of the feature
            cache: fresh random crops every step, encoded on ``train.device``
            (``photos``, ``frames`` and ``cache_dir`` are then not read; the
            pack was split with the same settings).  ``""``: the cache.
        workers: threads that cut and convert the crops of a pack.
    """

    photos: str = "../shared/data/photos"
    cache_dir: str = "runs/cache"
    val_fraction: float = 0.1
    split_seed: int = 0
    crops_per_photo: int = 3
    crop_size: int = 224
    frames: str = ""
    crops_per_frame: int = 4
    frames_val_fraction: float = 0.15
    frames_share: float = 0.4
    pack: str = ""
    workers: int = 4


@dataclass(frozen=True)
class DropConfig:
    """Condition dropout (so classifier-free guidance works for each condition).

    Attributes:
        palette: probability that the palette is dropped.
        text: probability that the caption is dropped.
        hints_none: probability of no hints.
        hints_dense: probability of dense hints (everything known but random
            holes: the fill step's case); otherwise sparse random points.
        sparse_min, sparse_max: range (log-uniform) of the share of grid cells
            given as sparse hints.
    """

    palette: float = 0.5
    text: float = 0.5
    hints_none: float = 0.45
    hints_dense: float = 0.15
    sparse_min: float = 0.001
    sparse_max: float = 0.5


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; the run is reproducible from it.

    Attributes:
        kind: ``"diffusion"`` (x0-predicting denoiser, MSE) or ``"regression"``
            (same network with no noise input, ``loss``).
        steps: optimizer steps.
        batch_size: crops per step.
        lr: peak learning rate (AdamW, linear warm-up, cosine decay).
        weight_decay: AdamW weight decay.
        warmup: warm-up steps.
        ema: decay of the exponential moving average of the weights (the
            exported weights are the average).
        seed: seed of initialisation, batches and noise.
        threads: torch CPU threads.
        device: where the network trains: ``"cpu"`` or ``"cuda"`` (``"cuda:N"``); with
            the feature cache or a pack (a pack also runs the encoder there).
        log_every, val_every, checkpoint_every: in steps.
        init: weights file (``.safetensors``) to start from instead of a random
            initialisation (``""``); tensors it lacks (a new head) start fresh.
        bin_loss: weight of the chroma-bin head's cross-entropy (networks
            with ``model.bins > 0``).
        loss: the regression's loss, ``"l1"`` (the conditional median),
            ``"mse"`` (the conditional mean) or ``"psnr"`` (the mean over crops
            of the log of each crop's MSE: what a mean of per-image PSNRs
            rewards; :func:`~chromaflow.training.train.crop_log_mse`);
            diffusion always uses MSE.
        spread_loss: weight of the chroma-spread term
            (:func:`~chromaflow.training.train.spread_deficit`): a crop whose
            predicted chroma varies less than ``spread_target`` times its
            ground truth's is penalised by the shortfall, so the network learns
            where it can afford vivid colour instead of hedging everywhere
            (0: off).
        spread_target: that share of the ground truth's spread, in (0, 1].
    """

    kind: str = "diffusion"
    steps: int = 3000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 200
    ema: float = 0.999
    seed: int = 0
    threads: int = 2
    device: str = "cpu"
    log_every: int = 50
    val_every: int = 500
    checkpoint_every: int = 250
    init: str = ""
    bin_loss: float = 0.5
    loss: str = "l1"
    spread_loss: float = 0.0
    spread_target: float = 0.8
    data: DataConfig = field(default_factory=DataConfig)
    model: ChromaUNetConfig = field(default_factory=ChromaUNetConfig)
    drop: DropConfig = field(default_factory=DropConfig)

    def to_dict(self) -> dict:
        return asdict(self)


def _build(cls, table: dict, where: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise InputError(f"unknown key(s) in [{where}] of the training config: {', '.join(unknown)}")
    return cls(**table)


def load_config(path: str | Path) -> TrainConfig:
    """Read a TOML training config (sections ``[data]``, ``[model]``, ``[drop]``, ``[train]``)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"invalid TOML in {path}: {exc}") from None
    extra = sorted(set(raw) - {"data", "model", "drop", "train"})
    if extra:
        raise InputError(f"unknown section(s) in the training config: {', '.join(extra)}")
    data = _build(DataConfig, raw.get("data", {}), "data")
    model_table = dict(raw.get("model", {}))
    model_table = {**ChromaUNetConfig().to_dict(), **model_table}
    try:
        model = ChromaUNetConfig.from_dict(model_table)
    except TypeError as exc:
        raise InputError(f"bad [model] section: {exc}") from None
    drop = _build(DropConfig, raw.get("drop", {}), "drop")
    train = _build(TrainConfig, raw.get("train", {}), "train")
    if train.kind not in KINDS:
        raise InputError(f"train.kind must be one of {', '.join(KINDS)}, not {train.kind!r}")
    if train.loss not in LOSSES:
        raise InputError(f"train.loss must be one of {', '.join(LOSSES)}, not {train.loss!r}")
    if not 0 < train.spread_target <= 1 or train.spread_loss < 0:
        raise InputError("train.spread_target must be in (0, 1] and train.spread_loss >= 0")
    if not (train.device == "cpu" or train.device == "cuda" or train.device.startswith("cuda:")):
        raise InputError(f"train.device must be 'cpu', 'cuda' or 'cuda:N', not {train.device!r}")
    if data.workers < 1:
        raise InputError("data.workers must be at least 1")
    return TrainConfig(**{**asdict(train), "data": data, "model": model, "drop": drop})


def config_from_dict(d: dict) -> TrainConfig:
    """Inverse of :meth:`TrainConfig.to_dict` (used when resuming)."""
    d = dict(d)
    return TrainConfig(
        **{k: v for k, v in d.items() if k not in ("data", "model", "drop")},
        data=DataConfig(**d["data"]),
        model=ChromaUNetConfig.from_dict(d["model"]),
        drop=DropConfig(**d["drop"]),
    )

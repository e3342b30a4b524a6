"""The training loop behind ``chromaflow train``.

Reproducible: batches and noise of step ``k`` come from generators seeded by
``(seed, k)``, so a run resumed from a checkpoint continues exactly as an
uninterrupted one.  The run folder holds ``config.json``, ``train.log`` (human
readable), ``metrics.jsonl`` (one JSON object per log or validation line),
``checkpoint.pt`` (written atomically every ``checkpoint_every`` steps) and, at
the end, ``model.safetensors`` (the EMA weights in float16, with the network
config in its metadata).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from chromaflow.errors import InputError
from chromaflow.models.chroma_bins import annealed_mean, bin_prior, soft_targets
from chromaflow.models.chroma_unet import AB_SCALE, ChromaUNet
from chromaflow.models.weights import save_model
from chromaflow.samplers.schedule import q_sample
from chromaflow.training.cache import CacheSpec, build_cache, list_photos, split_frames, split_photos
from chromaflow.training.config import DropConfig, TrainConfig, config_from_dict

FEATURE_KEYS = ("f8", "f16", "f32")


class CachedCrops:
    """A feature cache held in memory; :meth:`batch` returns float32 tensors."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.feats = [np.load(folder / f"{k}.npy") for k in FEATURE_KEYS]
        self.lightness = np.load(folder / "lightness.npy")
        self.ab = np.load(folder / "ab.npy")
        self.palette = np.load(folder / "palette.npy")
        self.caption = np.load(folder / "caption.npy")
        self.text = np.load(folder / "text.npy")
        self.count = len(self.ab)

    def chroma(self, idx: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        """``(B, 2, s/4, s/4)`` ground-truth chroma of crops ``idx`` (``rng``: unused, the crops are fixed)."""
        return torch.from_numpy(np.ascontiguousarray(self.ab[idx])).float()

    def batch(self, idx: np.ndarray, rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        """Crops ``idx`` as float32 CPU tensors (``rng``: unused, the crops are fixed)."""
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).float()  # noqa: E731
        return {
            "feats": tuple(t(f[idx]) for f in self.feats),
            "lightness": t(self.lightness[idx])[:, None],
            "ab": t(self.ab[idx]),
            "palette": t(self.palette[idx]),
            "text": t(self.text[self.caption[idx]]),
        }


class MixedCrops:
    """Training batches drawn from several sources in fixed shares (photos and video frames).

    A source is a :class:`CachedCrops` or a :class:`~chromaflow.training.pack.PackedCrops`: anything
    with ``count``, ``batch(idx, rng)`` and ``chroma(idx, rng)``.
    """

    def __init__(self, sources: list, shares: list[float]) -> None:
        if len(sources) != len(shares) or not sources:
            raise ValueError("one share per source")
        self.sources = sources
        self.shares = np.asarray(shares, np.float64) / float(sum(shares))
        self.count = sum(s.count for s in sources)

    def counts(self, batch_size: int) -> list[int]:
        """Crops of each source in a batch of ``batch_size`` (rounded, adding up)."""
        raw = self.shares * batch_size
        n = np.floor(raw).astype(int)
        for i in np.argsort(-(raw - n), kind="stable")[: batch_size - n.sum()]:
            n[i] += 1
        return n.tolist()

    def draw(self, rng: np.random.Generator, batch_size: int) -> dict[str, torch.Tensor]:
        parts = [src.batch(rng.integers(0, src.count, size=k), rng)
                 for src, k in zip(self.sources, self.counts(batch_size)) if k]
        if len(parts) == 1:
            return parts[0]
        return {key: (tuple(torch.cat([p[key][i] for p in parts]) for i in range(len(parts[0][key])))
                      if key == "feats" else torch.cat([p[key] for p in parts])) for key in parts[0]}

    def ab_sample(self, rng: np.random.Generator, count: int = 2000) -> torch.Tensor:
        """``(count, 2, h, w)`` ground-truth chroma drawn in the training shares (for the bin prior)."""
        return torch.cat([src.chroma(rng.integers(0, src.count, size=k), rng)
                          for src, k in zip(self.sources, self.counts(count)) if k])


def make_hints(ab: torch.Tensor, drop: DropConfig, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Hints drawn from ground truth: none, sparse points, or dense with holes.

    Args:
        ab: ``(B, 2, H, W)`` ground-truth chroma (Lab units).

    Returns:
        ``(hints, mask)``: ``(B, 2, H, W)`` and ``(B, 1, H, W)`` float.
    """
    b, _, h, w = ab.shape
    mask = np.zeros((b, h, w), np.float32)
    for i in range(b):
        u = rng.random()
        if u < drop.hints_none:
            continue
        if u < drop.hints_none + drop.hints_dense:
            m = np.ones((h, w), np.uint8)
            for _ in range(int(rng.integers(1, 5))):
                centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
                axes = (int(rng.integers(w // 10, w // 2)), int(rng.integers(h // 10, h // 2)))
                cv2.ellipse(m, centre, axes, float(rng.uniform(0, 180)), 0, 360, 0, -1)
            mask[i] = m
        else:
            share = math.exp(rng.uniform(math.log(drop.sparse_min), math.log(drop.sparse_max)))
            n = max(1, int(round(share * h * w)))
            cells = rng.choice(h * w, size=n, replace=False)
            mask[i].flat[cells] = 1.0
    m = torch.from_numpy(mask)[:, None].to(ab.device)
    return ab * m, m


def chroma_spread(ab: torch.Tensor) -> torch.Tensor:
    """Per-crop spread of chroma: ``sqrt(mean over pixels of |ab - mean ab|^2)``.

    Args:
        ab: ``(B, 2, H, W)`` chroma, any units (returned in the same units).

    Returns:
        ``(B,)``; it grows with the colourfulness of the crop (Hasler and
        Suesstrunk's measure is dominated by the same spread, in opponent space).
    """
    centred = ab - ab.mean(dim=(2, 3), keepdim=True)
    return (centred.square().sum(dim=1).mean(dim=(1, 2)) + 1e-8).sqrt()


def crop_log_mse(pred: torch.Tensor, target: torch.Tensor, floor: float = (2.0 / AB_SCALE) ** 2) -> torch.Tensor:
    """Mean over crops of ``log(MSE of the crop + floor)``: minus the mean PSNR of the crops, up to constants.

    A plain MSE weighs every pixel alike; this weighs each crop by the inverse of its error, as a mean of
    per-image PSNRs does (a near-gray photo coloured wrongly costs more than the same error on a colourful
    one).  ``floor`` (2 Lab units squared, in network units) keeps crops the hints already fix from
    dominating.

    Args:
        pred, target: ``(B, 2, H, W)`` chroma in network units (Lab / ``AB_SCALE``).
    """
    return torch.log((pred - target).square().mean(dim=(1, 2, 3)) + floor).mean()


def spread_deficit(pred: torch.Tensor, target: torch.Tensor, share: float) -> torch.Tensor:
    """Mean shortfall of the predicted chroma spread below ``share`` times the ground truth's.

    ``mean(relu(share * spread(target) - spread(pred)))`` over the batch: zero
    for a crop coloured at least that vividly, so the term only pushes hedged
    (near-gray) predictions out, and the network chooses where (the per-pixel
    loss keeps the colours right).

    Args:
        pred, target: ``(B, 2, H, W)`` chroma in the same units.
        share: in (0, 1].
    """
    return F.relu(share * chroma_spread(target) - chroma_spread(pred)).mean()


def training_loss(
    model: ChromaUNet, batch: dict[str, torch.Tensor], kind: str, drop: DropConfig,
    rng: np.random.Generator, gen: torch.Generator, bin_loss: float = 0.0,
    loss: str = "l1", spread_loss: float = 0.0, spread_target: float = 0.8,
) -> torch.Tensor:
    """One batch's loss: x0 MSE for diffusion, ``loss`` (L1 or MSE) for the regression baseline, plus
    ``bin_loss`` times the cross-entropy of the chroma-bin head (soft bilinear targets) when the network has
    one, plus ``spread_loss`` times :func:`spread_deficit` (regression only)."""
    ab = batch["ab"]
    b = ab.shape[0]
    x0 = ab / AB_SCALE
    dev = ab.device
    hints, mask = make_hints(ab, drop, rng)
    palette_on = torch.from_numpy(rng.random(b) >= drop.palette).to(dev)
    text_on = torch.from_numpy(rng.random(b) >= drop.text).to(dev)
    if kind == "diffusion":  # noise from the CPU generator, so a step's noise does not depend on the device
        t = torch.rand(b, generator=gen).to(dev)
        x_t = q_sample(x0, t, torch.randn(x0.shape, generator=gen).to(dev))
    else:
        t = torch.ones(b, device=dev)
        x_t = torch.zeros_like(x0)
    args = (x_t, t, batch["lightness"], hints, mask, batch["feats"], batch["palette"], palette_on,
            batch["text"], text_on)
    bins = model.config.bins
    if bins:
        pred, logits = model(*args, return_bins=True)
    else:
        pred = model(*args)
    if kind == "diffusion" or loss == "mse":
        total = F.mse_loss(pred, x0)
    elif loss == "psnr":
        total = crop_log_mse(pred, x0)
    else:
        total = F.l1_loss(pred, x0)
    if kind == "regression" and spread_loss > 0:
        total = total + spread_loss * spread_deficit(pred, x0, spread_target)
    if bins and bin_loss > 0:
        target = soft_targets(ab, bins, model.config.bin_step)
        total = total + bin_loss * -(target * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()
    return total


@torch.no_grad()
def validate(model: ChromaUNet, data, kind: str, batch_size: int = 64) -> dict[str, float]:
    """Mean chroma error on the validation crops with no conditions.

    For diffusion the prediction is the one from pure noise (``t = 1``), the
    model's estimate of the conditional mean; for regression the prediction.
    ``data`` is a :class:`CachedCrops` or a pack's validation source; the batches go to the model's device.
    Returns ``ab_rmse`` and ``ab_l1`` in Lab units, ``spread_ratio`` (the predicted chroma's
    :func:`chroma_spread` over the ground truth's, summed over crops: below 1 = muted), and for a network with a
    chroma-bin head ``bins_rmse`` / ``bins_l1`` of its mean read-out (``T = 1``).
    """
    model.eval()
    dev = next(model.parameters()).device
    gen = torch.Generator().manual_seed(1234)
    bins = model.config.bins
    sums = {"se": 0.0, "ae": 0.0, "bse": 0.0, "bae": 0.0, "sp": 0.0, "st": 0.0}
    n = 0
    for start in range(0, data.count, batch_size):
        idx = np.arange(start, min(start + batch_size, data.count))
        batch = to_device(data.batch(idx), dev)
        b = len(idx)
        x0 = batch["ab"] / AB_SCALE
        off = torch.zeros(b, dtype=torch.bool, device=dev)
        t = torch.ones(b, device=dev)
        x_t = torch.randn(x0.shape, generator=gen).to(dev) if kind == "diffusion" else torch.zeros_like(x0)
        zeros = torch.zeros_like(batch["lightness"])
        out = model(x_t, t, batch["lightness"], torch.zeros_like(x0), zeros, batch["feats"], batch["palette"],
                    off, batch["text"], off, return_bins=bool(bins))
        pred = out[0] if bins else out
        err = (pred - x0) * AB_SCALE
        sums["se"] += float(err.square().sum())
        sums["ae"] += float(err.abs().sum())
        sums["sp"] += float(chroma_spread(pred).sum())
        sums["st"] += float(chroma_spread(x0).sum())
        if bins:
            berr = annealed_mean(out[1], bins, model.config.bin_step, temperature=1.0) - batch["ab"]
            sums["bse"] += float(berr.square().sum())
            sums["bae"] += float(berr.abs().sum())
        n += err.numel()
    model.train()
    result = {"ab_rmse": math.sqrt(sums["se"] / n), "ab_l1": sums["ae"] / n,
              "spread_ratio": sums["sp"] / max(sums["st"], 1e-9)}
    if bins:
        result.update(bins_rmse=math.sqrt(sums["bse"] / n), bins_l1=sums["bae"] / n)
    return result


def to_device(batch: dict, device: torch.device) -> dict:
    """A batch's tensors (and the tuple of feature maps) on ``device``."""
    return {k: tuple(x.to(device) for x in v) if isinstance(v, tuple) else v.to(device) for k, v in batch.items()}


def _lr(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class RunPaths:
    root: Path

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def weights(self) -> Path:
        return self.root / "model.safetensors"


@dataclass(frozen=True)
class CacheSet:
    """The cache folders of a run: photos (train, val) and, when frames are used, frames (train, val)."""

    photo_train: Path
    photo_val: Path
    frame_train: Path | None = None
    frame_val: Path | None = None


def prepare_caches(cfg: TrainConfig, log: Callable[[str], None], quiet: bool = True) -> CacheSet:
    """Build (or reuse) the train and validation caches for ``cfg.data``: photos split by photo,
    frames (``cfg.data.frames``) split by clip."""
    from chromaflow.models.text import shared_text_encoder

    d = cfg.data
    photos = list_photos(d.photos)
    train, val = split_photos(photos, d.val_fraction, d.split_seed)
    tag = f"s{d.crop_size}-v{d.val_fraction:g}-seed{d.split_seed}"
    root = Path(d.cache_dir)
    jobs = [
        (root / f"val-{tag}", val, 0),
        (root / f"train-{tag}-c{d.crops_per_photo}", train, d.crops_per_photo),
    ]
    if d.frames:
        f_train, f_val = split_frames(list_photos(d.frames), d.frames_val_fraction, d.split_seed)
        ftag = f"s{d.crop_size}-v{d.frames_val_fraction:g}-seed{d.split_seed}"
        jobs += [
            (root / f"frames-val-{ftag}", f_val, 0),
            (root / f"frames-train-{ftag}-c{d.crops_per_frame}", f_train, d.crops_per_frame),
        ]
    for folder, items, crops in jobs:  # crops 0: one centre crop (validation)
        if not (folder / "meta.json").exists():
            log(f"building cache {folder} from {len(items)} images")
            spec = CacheSpec(crop_size=d.crop_size, crops_per_photo=max(1, crops), train=crops > 0,
                             seed=d.split_seed)
            build_cache(items, folder, spec, text_encoder=shared_text_encoder(), quiet=quiet, log=log)
    folders = [folder for folder, _, _ in jobs]
    if d.frames:
        return CacheSet(photo_train=folders[1], photo_val=folders[0], frame_train=folders[3], frame_val=folders[2])
    return CacheSet(photo_train=folders[1], photo_val=folders[0])


def _initialise_from(model: ChromaUNet, path: Path, log: Callable[[str], None]) -> None:
    """Copy the tensors of a weights file into ``model`` (same names and shapes); report what starts fresh."""
    from chromaflow.models.weights import load_model

    source, _ = load_model(path)
    theirs = source.state_dict()
    mine = model.state_dict()
    shared = {k: v for k, v in theirs.items() if k in mine and mine[k].shape == v.shape}
    if not shared:
        raise InputError(f"train.init: {path} shares no tensor with this network")
    model.load_state_dict(shared, strict=False)
    fresh = sorted(k for k in mine if k not in shared)
    log(f"initialised from {path} ({len(shared)} tensors){'; new: ' + ', '.join(fresh) if fresh else ''}")


def _save_checkpoint(path: Path, cfg: TrainConfig, model, ema, opt, step: int) -> None:
    tmp = path.with_suffix(".pt.part")
    torch.save({"config": cfg.to_dict(), "model": model.state_dict(), "ema": ema.state_dict(),
                "optimizer": opt.state_dict(), "step": step}, tmp)
    tmp.replace(path)


def train(
    cfg: TrainConfig | None,
    out_dir: str | Path,
    resume: bool = False,
    quiet: bool = False,
    echo: Callable[[str], None] = print,
    stop_at: int | None = None,
    max_minutes: float | None = None,
) -> Path | None:
    """Run (or resume) training; returns the path of the exported ``model.safetensors``.

    Args:
        cfg: the configuration (``None`` when resuming: read from the run folder).
        out_dir: run folder.
        resume: continue from ``out_dir/checkpoint.pt``.
        quiet: no progress bar while caching features.
        echo: where log lines go besides ``train.log``.
        stop_at: pause after this step (a checkpoint is written, and the EMA
            weights so far as ``model_step<N>.safetensors``; continue with
            ``resume=True``), for runs split over several sessions.  Returns
            ``None`` when paused before the end.
        max_minutes: pause the same way once this much wall-clock time has
            passed since the call (data loading included), for a machine lent
            for a fixed time.
    """
    deadline = None if max_minutes is None else time.time() + 60.0 * max_minutes
    paths = RunPaths(Path(out_dir))
    state = None
    if resume:
        if not paths.checkpoint.exists():
            raise InputError(f"nothing to resume: {paths.checkpoint} does not exist")
        state = torch.load(paths.checkpoint, map_location="cpu", weights_only=False)
        saved = config_from_dict(state["config"])
        if cfg is not None and cfg != saved:
            raise InputError("the config differs from the checkpoint's; resume without --config or use a new folder")
        cfg = saved
    elif cfg is None:
        raise InputError("a config is needed to start a run")
    elif paths.checkpoint.exists():
        raise InputError(f"{paths.root} already holds a run; use --resume or another folder")
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"train.device is {cfg.device!r} but torch sees no CUDA device here")
    paths.root.mkdir(parents=True, exist_ok=True)
    (paths.root / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))

    def log(msg: str, **metrics) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}"
        with open(paths.log, "a") as f:
            f.write(line + "\n")
        if metrics:
            with open(paths.metrics, "a") as f:
                f.write(json.dumps(metrics) + "\n")
        echo(line)

    torch.set_num_threads(cfg.threads)
    if cfg.data.pack:
        from chromaflow.training.pack import packed_sources

        sources, shares, vals = packed_sources(cfg.data.pack, cfg.data, device, log=lambda m: log(m))
    else:
        caches = prepare_caches(cfg, lambda m: log(m), quiet=quiet)
        sources, shares = [CachedCrops(caches.photo_train)], [1.0]
        vals = {"photos": CachedCrops(caches.photo_val)}
        if caches.frame_train is not None:
            sources.append(CachedCrops(caches.frame_train))
            shares = [1.0 - cfg.data.frames_share, cfg.data.frames_share]
            vals["frames"] = CachedCrops(caches.frame_val)
    data = MixedCrops(sources, shares)
    unit = "images (fresh crops every step)" if cfg.data.pack else "crops"
    held = (f"{' + '.join(str(v.count) for v in vals.values())} validation {unit.split()[0]}" if vals
            else "no validation set here (validate the weights afterwards)")
    log(f"{cfg.kind}: {' + '.join(str(s.count) for s in sources)} training {unit} (shares "
        f"{', '.join(f'{x:g}' for x in shares)}), {held}, {cfg.steps} steps")

    torch.manual_seed(cfg.seed)
    model = ChromaUNet(cfg.model)
    if state is None and cfg.init:
        _initialise_from(model, Path(cfg.init), log)
    if state is None and cfg.model.bins:
        model.bin_prior.copy_(bin_prior(data.ab_sample(np.random.default_rng([cfg.seed, 7])), cfg.model.bins,
                                        cfg.model.bin_step))
    model.to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = 0
    if state is not None:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        step = state["step"]
        log(f"resumed at step {step}")
    model.train()
    t_start = time.time()
    start_step = step
    running = 0.0
    n_running = 0

    def draw(k: int) -> tuple[np.random.Generator, dict[str, torch.Tensor]]:
        rng = np.random.default_rng([cfg.seed, k])
        return rng, to_device(data.draw(rng, cfg.batch_size), device)

    # the next step's batch is cut (and, from a pack, encoded) in a thread while this step trains; the batch and
    # the generator's state after it are the same as drawn in line, so results do not depend on it
    prefetch = ThreadPoolExecutor(1, thread_name_prefix="chromaflow-batches")
    upcoming = prefetch.submit(draw, step) if step < cfg.steps else None
    try:
        while step < cfg.steps:
            out_of_time = deadline is not None and time.time() >= deadline
            if (stop_at is not None and step >= stop_at) or out_of_time:
                _save_checkpoint(paths.checkpoint, cfg, model, ema, opt, step)
                snapshot = paths.root / f"model_step{step}.safetensors"  # the EMA weights so far, usable as is
                save_model(ema, snapshot, kind=cfg.kind, extra={"steps": str(step), "seed": str(cfg.seed)})
                why = f" ({max_minutes:g} min used)" if out_of_time else ""
                log(f"paused at step {step}{why} (weights so far: {snapshot}); continue with --resume")
                return None
            rng, batch = upcoming.result()
            upcoming = prefetch.submit(draw, step + 1) if step + 1 < cfg.steps else None
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
            for group in opt.param_groups:
                group["lr"] = _lr(cfg, step)
            loss = training_loss(model, batch, cfg.kind, cfg.drop, rng, gen, bin_loss=cfg.bin_loss, loss=cfg.loss,
                                 spread_loss=cfg.spread_loss, spread_target=cfg.spread_target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            with torch.no_grad():
                decay = min(cfg.ema, (1 + step) / (10 + step))
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(pm, 1 - decay)
            step += 1
            running += float(loss.detach())
            n_running += 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                rate = (step - start_step) / max(1e-9, time.time() - t_start)
                eta_min = (cfg.steps - step) / max(rate, 1e-9) / 60
                log(f"step {step}/{cfg.steps} loss {running / n_running:.5f} lr {_lr(cfg, step - 1):.2e} "
                    f"{rate:.2f} steps/s, about {eta_min:.0f} min left", step=step, loss=running / n_running)
                running, n_running = 0.0, 0
            if step % cfg.val_every == 0 or step == cfg.steps:
                for name, val in vals.items():
                    v = validate(ema, val, cfg.kind)
                    extra = f", bins mean L1 {v['bins_l1']:.3f}" if "bins_l1" in v else ""
                    prefix = "val_" if name == "photos" else f"val_{name}_"
                    log(f"validation ({name}) at step {step}: ab RMSE {v['ab_rmse']:.3f}, ab L1 {v['ab_l1']:.3f}, "
                        f"spread {v['spread_ratio']:.3f} of the truth's{extra} "
                        "(EMA, no conditions)", step=step, **{f"{prefix}{k}": x for k, x in v.items()})
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                _save_checkpoint(paths.checkpoint, cfg, model, ema, opt, step)
    finally:
        prefetch.shutdown(wait=True, cancel_futures=True)
    save_model(ema, paths.weights, kind=cfg.kind, extra={"steps": str(cfg.steps), "seed": str(cfg.seed)})
    log(f"wrote {paths.weights}")
    return paths.weights

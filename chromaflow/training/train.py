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
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from chromaflow.errors import InputError
from chromaflow.models.chroma_unet import AB_SCALE, ChromaUNet
from chromaflow.models.weights import save_model
from chromaflow.samplers.schedule import q_sample
from chromaflow.training.cache import CacheSpec, build_cache, list_photos, split_photos
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

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).float()  # noqa: E731
        return {
            "feats": tuple(t(f[idx]) for f in self.feats),
            "lightness": t(self.lightness[idx])[:, None],
            "ab": t(self.ab[idx]),
            "palette": t(self.palette[idx]),
            "text": t(self.text[self.caption[idx]]),
        }


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
    m = torch.from_numpy(mask)[:, None]
    return ab * m, m


def training_loss(
    model: ChromaUNet, batch: dict[str, torch.Tensor], kind: str, drop: DropConfig,
    rng: np.random.Generator, gen: torch.Generator,
) -> torch.Tensor:
    """One batch's loss: x0 MSE for diffusion, L1 for the regression baseline."""
    ab = batch["ab"]
    b = ab.shape[0]
    x0 = ab / AB_SCALE
    hints, mask = make_hints(ab, drop, rng)
    palette_on = torch.from_numpy(rng.random(b) >= drop.palette)
    text_on = torch.from_numpy(rng.random(b) >= drop.text)
    if kind == "diffusion":
        t = torch.rand(b, generator=gen)
        x_t = q_sample(x0, t, torch.randn(x0.shape, generator=gen))
    else:
        t = torch.ones(b)
        x_t = torch.zeros_like(x0)
    pred = model(x_t, t, batch["lightness"], hints, mask, batch["feats"], batch["palette"], palette_on,
                 batch["text"], text_on)
    if kind == "diffusion":
        return F.mse_loss(pred, x0)
    return F.l1_loss(pred, x0)


@torch.no_grad()
def validate(model: ChromaUNet, data: CachedCrops, kind: str, batch_size: int = 64) -> dict[str, float]:
    """Mean chroma error on the validation crops with no conditions.

    For diffusion the prediction is the one from pure noise (``t = 1``), the
    model's estimate of the conditional mean; for regression the prediction.
    Returns ``ab_rmse`` and ``ab_l1`` in Lab units.
    """
    model.eval()
    gen = torch.Generator().manual_seed(1234)
    se = ae = 0.0
    n = 0
    for start in range(0, data.count, batch_size):
        idx = np.arange(start, min(start + batch_size, data.count))
        batch = data.batch(idx)
        b = len(idx)
        x0 = batch["ab"] / AB_SCALE
        off = torch.zeros(b, dtype=torch.bool)
        t = torch.ones(b)
        x_t = torch.randn(x0.shape, generator=gen) if kind == "diffusion" else torch.zeros_like(x0)
        zeros = torch.zeros_like(batch["lightness"])
        pred = model(x_t, t, batch["lightness"], torch.zeros_like(x0), zeros, batch["feats"], batch["palette"],
                     off, batch["text"], off)
        err = (pred - x0) * AB_SCALE
        se += float(err.square().sum())
        ae += float(err.abs().sum())
        n += err.numel()
    model.train()
    return {"ab_rmse": math.sqrt(se / n), "ab_l1": ae / n}


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


def prepare_caches(cfg: TrainConfig, log: Callable[[str], None], quiet: bool = True) -> tuple[Path, Path]:
    """Build (or reuse) the train and validation caches for ``cfg.data``."""
    from chromaflow.models.text import shared_text_encoder

    d = cfg.data
    photos = list_photos(d.photos)
    train, val = split_photos(photos, d.val_fraction, d.split_seed)
    tag = f"s{d.crop_size}-v{d.val_fraction:g}-seed{d.split_seed}"
    root = Path(d.cache_dir)
    train_dir = root / f"train-{tag}-c{d.crops_per_photo}"
    val_dir = root / f"val-{tag}"
    for folder, photos_, spec in (
        (val_dir, val, CacheSpec(crop_size=d.crop_size, train=False, seed=d.split_seed)),
        (train_dir, train, CacheSpec(crop_size=d.crop_size, crops_per_photo=d.crops_per_photo, seed=d.split_seed)),
    ):
        if not (folder / "meta.json").exists():
            log(f"building cache {folder} from {len(photos_)} photos")
            build_cache(photos_, folder, spec, text_encoder=shared_text_encoder(), quiet=quiet, log=log)
    return train_dir, val_dir


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
) -> Path | None:
    """Run (or resume) training; returns the path of the exported ``model.safetensors``.

    Args:
        cfg: the configuration (``None`` when resuming: read from the run folder).
        out_dir: run folder.
        resume: continue from ``out_dir/checkpoint.pt``.
        quiet: no progress bar while caching features.
        echo: where log lines go besides ``train.log``.
        stop_at: pause after this step (a checkpoint is written; continue with
            ``resume=True``), for runs split over several sessions.  Returns
            ``None`` when paused before the end.
    """
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
    train_dir, val_dir = prepare_caches(cfg, lambda m: log(m), quiet=quiet)
    data = CachedCrops(train_dir)
    val = CachedCrops(val_dir)
    log(f"{cfg.kind}: {data.count} training crops, {val.count} validation crops, {cfg.steps} steps")

    torch.manual_seed(cfg.seed)
    model = ChromaUNet(cfg.model)
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
    while step < cfg.steps:
        if stop_at is not None and step >= stop_at:
            _save_checkpoint(paths.checkpoint, cfg, model, ema, opt, step)
            log(f"paused at step {step}; continue with --resume")
            return None
        rng = np.random.default_rng([cfg.seed, step])
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        idx = rng.integers(0, data.count, size=cfg.batch_size)
        for group in opt.param_groups:
            group["lr"] = _lr(cfg, step)
        loss = training_loss(model, data.batch(idx), cfg.kind, cfg.drop, rng, gen)
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
            v = validate(ema, val, cfg.kind)
            log(f"validation at step {step}: ab RMSE {v['ab_rmse']:.3f}, ab L1 {v['ab_l1']:.3f} (EMA, no conditions)",
                step=step, **{f"val_{k}": x for k, x in v.items()})
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            _save_checkpoint(paths.checkpoint, cfg, model, ema, opt, step)
    save_model(ema, paths.weights, kind=cfg.kind, extra={"steps": str(cfg.steps), "seed": str(cfg.seed)})
    log(f"wrote {paths.weights}")
    return paths.weights

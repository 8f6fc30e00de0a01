"""A learned pairwise peer: MONAI's VoxelMorph, trained ED -> t on the same cine data as the project's models.

The network is :class:`monai.networks.nets.VoxelMorph` in 2D (its default U-Net backbone, diffeomorphic: the
predicted velocity is integrated by scaling and squaring). It is called ``net(moving, fixed)`` with the ED frame
moving and frame ``t`` fixed; its ``ddf`` warps the ED frame onto frame ``t`` with MONAI's ``Warp`` and is therefore
``u_{ED->t}`` in the project's convention as it comes. No pretrained weights exist: :func:`train_voxelmorph`
trains it unsupervised (intensity MSE plus a diffusion penalty on the field, VoxelMorph's recipe) and
``python -m monai_cardiac.baselines.train_voxelmorph`` is its command.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiffusionLoss
from monai.networks.nets import VoxelMorph
from monai.utils import set_determinism

from monai_cardiac.data.nifti import NUM_CLASSES
from monai_cardiac.displacement import warp_labels
from monai_cardiac.metrics import compute_dice

from .base import SequenceRegistration

__all__ = ["VoxelMorphRegistration", "build_voxelmorph", "load_voxelmorph", "train_voxelmorph"]

_MULTIPLE = 16  # the default backbone halves the grid three times and needs sides divisible by 8: pad to 16


def build_voxelmorph(integration_steps: int = 7) -> VoxelMorph:
    """MONAI's 2D VoxelMorph with its default backbone (the paper's U-Net widths).

    Args:
        integration_steps: scaling-and-squaring steps (0: a plain displacement network, not diffeomorphic).
    """
    return VoxelMorph(integration_steps=integration_steps, spatial_dims=2)


def load_voxelmorph(checkpoint: str | Path, device: torch.device | str = "cpu") -> VoxelMorph:
    """A VoxelMorph written by :func:`train_voxelmorph` (``{"model": state_dict, "config": {...}}``), in eval mode.

    Raises:
        FileNotFoundError: no file at ``checkpoint``.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"no VoxelMorph checkpoint at {path}")
    state = torch.load(path, map_location=device, weights_only=True)
    config = state.get("config", {}) if isinstance(state, dict) else {}
    network = build_voxelmorph(int(config.get("integration_steps", 7))).to(device)
    network.load_state_dict(state.get("model", state))
    return network.eval()


def _pad_to_multiple(x: torch.Tensor, multiple: int = _MULTIPLE) -> torch.Tensor:
    """Replicate-pad the last two axes at their high end to multiples of ``multiple`` (indices stay the same)."""
    pad_h, pad_w = (-x.shape[-2]) % multiple, (-x.shape[-1]) % multiple
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x


def voxelmorph_ddf(network: VoxelMorph, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
    """``u_{moving->fixed}`` ``(B, 2, H, W)`` in voxels for images ``(B, 1, H, W)`` of any size (padded inside)."""
    size = moving.shape[-2:]
    _, ddf = network(_pad_to_multiple(moving), _pad_to_multiple(fixed))
    return ddf[..., : size[0], : size[1]]


class VoxelMorphRegistration(SequenceRegistration):
    """ED -> t VoxelMorph of every frame in one batched forward pass.

    Args:
        network: a trained VoxelMorph, or the path of a checkpoint of :func:`train_voxelmorph`.
        device: where it runs.
        batch_size: frames per forward pass (memory bound).
    """

    name = "voxelmorph"

    def __init__(self, network: VoxelMorph | str | Path, device: torch.device | str = "cpu",
                 batch_size: int = 64) -> None:
        self.checkpoint = None if isinstance(network, torch.nn.Module) else str(network)
        self._network = network.eval() if isinstance(network, torch.nn.Module) else load_voxelmorph(network, device)
        self._device = torch.device(device)
        self.batch_size = int(batch_size)

    @torch.inference_mode()
    def _register(self, frames: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
        images = torch.from_numpy(frames).to(self._device)[:, None]
        ddf = torch.zeros(frames.shape[0], 2, *frames.shape[1:])
        for start in range(1, frames.shape[0], self.batch_size):
            fixed = images[start:start + self.batch_size]
            moving = images[:1].expand_as(fixed)
            ddf[start:start + fixed.shape[0]] = voxelmorph_ddf(self._network, moving, fixed).float().cpu()
        return ddf.numpy()


def _pair_batch(slices: Sequence[torch.Tensor], rng: np.random.Generator, flip: bool) -> tuple[torch.Tensor, ...]:
    """ED frames and one random later frame of each cine ``(T, H, W)``, both ``(B, 1, H, W)``, randomly flipped."""
    moving, fixed = [], []
    for cine in slices:
        t = int(rng.integers(1, cine.shape[0]))
        pair = cine[[0, t]]
        if flip:
            for axis in (1, 2):
                if rng.random() < 0.5:
                    pair = pair.flip(axis)
        moving.append(pair[:1])
        fixed.append(pair[1:])
    return torch.stack(moving), torch.stack(fixed)


@torch.inference_mode()
def _validation_dice(network: VoxelMorph, cases: Sequence[dict], device: torch.device) -> float:
    """Mean Dice (RV, Myo, LV) of the ED labels warped to ES with ``u_{ED->ES}`` against the ES labels."""
    if not cases:
        return float("nan")
    network.eval()
    scores = []
    for case in cases:
        image, labels, es = case["image"], case["label"], case["es"]
        u = voxelmorph_ddf(network, image[None, :1].to(device), image[None, es:es + 1].to(device)).float().cpu()
        warped = warp_labels(labels[None, :1], u)
        scores.append(float(compute_dice(warped, labels[None, es:es + 1], num_classes=NUM_CLASSES).mean()))
    network.train()
    return float(np.mean(scores))


def train_voxelmorph(
    train_cines: Sequence[torch.Tensor],
    output: str | Path,
    val_cases: Sequence[dict] = (),
    minutes: float = 15.0,
    max_epochs: int = 1000,
    batch_size: int = 8,
    learning_rate: float = 1e-4,
    smoothness: float = 0.01,
    integration_steps: int = 7,
    flip: bool = True,
    seed: int = 0,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train VoxelMorph on ED -> t pairs of cine slices within a time and epoch budget; write its weights.

    Each epoch visits every training slice once, paired with one of its later frames drawn at random (and, with
    ``flip``, flipped along either axis with probability 1/2). The loss is the mean squared intensity difference
    between the warped ED frame and frame ``t`` plus ``smoothness`` times the diffusion penalty (mean squared
    spatial gradient) of the field. Training stops after ``max_epochs`` or at the end of the first epoch that
    finishes past ``minutes``.

    Args:
        train_cines: cines ``(T, H, W)`` in [0, 1], ED first; all of one size per batch (the benchmark's crops).
        output: checkpoint path; ``{"model", "config", "history"}`` is written there after every epoch that
            improves the validation Dice (every epoch without validation cases), and the last weights beside it as
            ``<stem>_last.pt``.
        val_cases: ``{"image": (T, H, W), "label": (T, H, W) long, "es": int}`` slices for model selection.
        minutes: wall-clock budget.
        max_epochs: epoch budget.
        batch_size: pairs per step.
        learning_rate: Adam's step.
        smoothness: weight of the diffusion penalty.
        integration_steps: VoxelMorph's scaling-and-squaring steps.
        flip: random flips (augmentation).
        seed: seed of the weights and of the pair draws.
        device: where it trains.
        log: receives one line per epoch.

    Returns:
        ``{"epochs", "seconds", "best_val_dice", "best_epoch", "history", "output"}``.

    Raises:
        ValueError: no training cine, or a cine that is not ``(T >= 2, H, W)``.
    """
    if not train_cines or any(c.ndim != 3 or c.shape[0] < 2 for c in train_cines):
        raise ValueError("train_voxelmorph needs at least one cine, each shaped (T >= 2, H, W)")
    set_determinism(seed)
    rng = np.random.default_rng(seed)
    device = torch.device(device)
    network = build_voxelmorph(integration_steps).to(device).train()
    optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
    diffusion = DiffusionLoss()
    config = {"integration_steps": integration_steps, "smoothness": smoothness, "learning_rate": learning_rate,
              "batch_size": batch_size, "flip": flip, "seed": seed, "num_train_slices": len(train_cines)}
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    history: list[dict] = []
    best, best_epoch, start = -math.inf, 0, time.perf_counter()
    epoch = 0
    while epoch < max_epochs and (time.perf_counter() - start) < minutes * 60.0:
        epoch += 1
        order = rng.permutation(len(train_cines))
        losses = []
        for first in range(0, len(order), batch_size):
            moving, fixed = _pair_batch([train_cines[i] for i in order[first:first + batch_size]], rng, flip)
            moving, fixed = moving.to(device), fixed.to(device)
            warped, ddf = network(_pad_to_multiple(moving), _pad_to_multiple(fixed))
            size = moving.shape[-2:]
            similarity = F.mse_loss(warped[..., : size[0], : size[1]], fixed)
            loss = similarity + smoothness * diffusion(ddf[..., : size[0], : size[1]])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        val_dice = _validation_dice(network, val_cases, device)
        elapsed = time.perf_counter() - start
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_dice": val_dice, "seconds": elapsed})
        log(f"voxelmorph epoch {epoch}: loss {np.mean(losses):.5f}, validation Dice ED->ES {val_dice:.4f}, "
            f"{elapsed / 60:.1f} min")
        state = {"model": network.state_dict(), "config": config, "history": json.dumps(history)}
        torch.save(state, output.with_name(f"{output.stem}_last.pt"))
        score = val_dice if not math.isnan(val_dice) else float(epoch)
        if score > best:
            best, best_epoch = score, epoch
            torch.save(state, output)
    return {"epochs": epoch, "seconds": time.perf_counter() - start,
            "best_val_dice": best if val_cases else float("nan"), "best_epoch": best_epoch, "history": history,
            "output": str(output)}

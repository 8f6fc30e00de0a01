"""Every loss of both models computes in float32 under CPU float16 / bfloat16 autocast (issue 16, item 5).

Inputs are created in the autocast dtype (as a network under autocast returns them) and hold a flat region
and a zero-padded border, where half-precision LNCC used to give NaN. Because the losses cast their inputs to
float32 and leave autocast off, the value under autocast must equal, exactly, the value computed without
autocast from the same inputs cast to float32; the gradients reaching the half-precision inputs must equal
those float32 gradients rounded to the input dtype, exactly as well.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from monai_cardiac.losses import (
    HuberFlowSmoothnessLoss,
    JointMotionSegmentationLoss,
    KLDivergenceLoss,
    MaskedCrossEntropyLoss,
    MaskedDiceCELoss,
    ProbabilisticMotionLoss,
    SymmetricLocalNormalizedCrossCorrelationLoss,
    TemporalHuberFlowSmoothnessLoss,
    WarpedCrossEntropyLoss,
)
from monai_cardiac.losses._precision import float32_loss

torch.set_num_threads(1)

SIZE = 32  # H = W
BORDER = 6  # zero padding, wider than the LNCC window's half-width (4): some windows see only zeros
BATCH, FRAMES, CLASSES, LATENT = 2, 3, 4, 6
HALF_DTYPES = [torch.float16, torch.bfloat16]


def _textured(lead: tuple[int, ...], seed: int, scale: float = 1.0, offset: float = 0.0) -> torch.Tensor:
    """``(*lead, SIZE, SIZE)`` float32: smooth noise on the left of the interior, flat 0.6 on its right, 0 border."""
    noise = torch.rand(*lead, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    smooth = F.avg_pool2d(noise.reshape(-1, 1, SIZE, SIZE), 3, stride=1, padding=1).reshape(noise.shape)
    out = torch.zeros_like(smooth)
    inner, middle = slice(BORDER, SIZE - BORDER), SIZE // 2
    out[..., inner, BORDER:middle] = scale * smooth[..., inner, BORDER:middle] + offset
    out[..., inner, middle : SIZE - BORDER] = 0.6
    return out


def _labels(lead: tuple[int, ...], seed: int) -> torch.Tensor:
    """``(*lead, SIZE, SIZE)`` int64 class indices, background (0) in the padded border."""
    labels = torch.randint(0, CLASSES, (*lead, SIZE, SIZE), generator=torch.Generator().manual_seed(seed))
    labels[..., :BORDER, :] = labels[..., -BORDER:, :] = 0
    labels[..., :BORDER] = labels[..., -BORDER:] = 0
    return labels


def _image(lead: tuple[int, ...], seed: int) -> torch.Tensor:
    """Intensities in [0, 1]: textured left, flat right, zero-padded border."""
    return _textured(lead, seed)


def _field(lead: tuple[int, ...], seed: int) -> torch.Tensor:
    """Displacements of up to about 1.5 voxels (0 in the border, 0.6 voxels in the flat region)."""
    return _textured(lead, seed, scale=3.0, offset=-1.5)


def _logits(lead: tuple[int, ...], seed: int) -> torch.Tensor:
    """Class logits within about +-3 where textured; equal across classes (uniform) where flat or padded."""
    return _textured(lead, seed, scale=8.0, offset=-4.0)


def _latent(seed: int) -> torch.Tensor:
    """``(BATCH, FRAMES, LATENT)`` codes whose last time step is zero-padded."""
    codes = torch.randn(BATCH, FRAMES, LATENT, generator=torch.Generator().manual_seed(seed))
    codes[:, -1] = 0.0
    return codes


LABEL_MASK = torch.tensor([[True, False, True], [False, True, False]])


def _case_huber() -> tuple[torch.nn.Module, tuple[Any, ...]]:
    return HuberFlowSmoothnessLoss(), (_field((BATCH, 2), 0),)


def _case_temporal_huber() -> tuple[torch.nn.Module, tuple[Any, ...]]:
    return TemporalHuberFlowSmoothnessLoss(), (_field((BATCH, FRAMES, 2), 1),)


def _case_kl() -> tuple[torch.nn.Module, tuple[Any, ...]]:
    return KLDivergenceLoss(), (_latent(2), 0.5 * _latent(3))


def _case_masked_ce() -> tuple[torch.nn.Module, tuple[Any, ...]]:
    return MaskedCrossEntropyLoss(), (_logits((BATCH, FRAMES, CLASSES), 4), _labels((BATCH, FRAMES), 5), LABEL_MASK)


def _case_masked_dice_ce() -> tuple[torch.nn.Module, tuple[Any, ...]]:
    return MaskedDiceCELoss(), (_logits((BATCH, FRAMES, CLASSES), 6), _labels((BATCH, FRAMES), 7), LABEL_MASK)


def _case_warped_ce() -> tuple[torch.nn.Module, tuple[Any, ...]]:
    args = (
        _logits((BATCH, FRAMES, CLASSES), 8),
        _field((BATCH, FRAMES, 2), 9),
        _labels((BATCH,), 10),
        LABEL_MASK,
        torch.tensor([True, True]),
    )
    return WarpedCrossEntropyLoss(), args


def _case_symmetric_lncc() -> tuple[torch.nn.Module, tuple[Any, ...]]:
    args = (_image((BATCH, 1), 11), _image((BATCH, 1), 12), _field((BATCH, 2), 13), _field((BATCH, 2), 14))
    return SymmetricLocalNormalizedCrossCorrelationLoss(), args


def _case_joint() -> tuple[torch.nn.Module, tuple[Any, ...]]:
    outputs = {
        "ddf_to_target": _field((BATCH, FRAMES, 2), 15),
        "warped_sources": _image((BATCH, FRAMES), 16),
        "seg_logits_target": _logits((BATCH, CLASSES), 17),
        "seg_logits_sources": _logits((BATCH, FRAMES, CLASSES), 18),
    }
    label_mask = torch.tensor([[True, False, True, False], [True, True, False, False]])
    args = (outputs, _image((BATCH, 1), 19), _labels((BATCH, 1 + FRAMES), 20), label_mask)
    return JointMotionSegmentationLoss(), args


def _case_probabilistic() -> tuple[torch.nn.Module, tuple[Any, ...]]:
    args = (
        _image((BATCH, 1), 21),
        _image((BATCH, FRAMES), 22),
        _field((BATCH, FRAMES, 2), 23),
        _field((BATCH, FRAMES, 2), 24),
        _latent(25),
        0.5 * _latent(26),
    )
    return ProbabilisticMotionLoss(), args


CASES: dict[str, Callable[[], tuple[torch.nn.Module, tuple[Any, ...]]]] = {
    "HuberFlowSmoothnessLoss": _case_huber,
    "TemporalHuberFlowSmoothnessLoss": _case_temporal_huber,
    "KLDivergenceLoss": _case_kl,
    "MaskedCrossEntropyLoss": _case_masked_ce,
    "MaskedDiceCELoss": _case_masked_dice_ce,
    "WarpedCrossEntropyLoss": _case_warped_ce,
    "SymmetricLocalNormalizedCrossCorrelationLoss": _case_symmetric_lncc,
    "JointMotionSegmentationLoss": _case_joint,
    "ProbabilisticMotionLoss": _case_probabilistic,
}


def _leaves(value: Any, dtype: torch.dtype) -> Any:
    """``value`` with each float tensor replaced by a detached leaf of ``dtype`` that requires grad."""
    if isinstance(value, Mapping):
        return {key: _leaves(item, dtype) for key, item in value.items()}
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.detach().to(dtype).requires_grad_(True)
    return value


def _grad_leaves(args: tuple[Any, ...]) -> list[torch.Tensor]:
    """The tensors of ``args`` (or of its mappings) that require grad, in order."""
    found: list[torch.Tensor] = []
    for value in args:
        items = value.values() if isinstance(value, Mapping) else (value,)
        found += [item for item in items if isinstance(item, torch.Tensor) and item.requires_grad]
    return found


def _terms(result: torch.Tensor | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The loss's output as named scalars; the first one is minimised."""
    return dict(result) if isinstance(result, Mapping) else {"loss": result}


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=["float16", "bfloat16"])
@pytest.mark.parametrize("name", list(CASES))
def test_loss_is_float32_and_finite_under_cpu_autocast(name: str, dtype: torch.dtype):
    loss_fn, raw = CASES[name]()
    half_args = tuple(_leaves(value, dtype) for value in raw)
    with torch.autocast("cpu", dtype=dtype):
        assert torch.is_autocast_enabled("cpu")
        half_terms = _terms(loss_fn(*half_args))
    half_terms["loss"].backward()

    # the same inputs, cast to float32 first, without autocast
    ref_args = tuple(_leaves(_leaves(value, dtype), torch.float32) for value in raw)
    ref_terms = _terms(loss_fn(*ref_args))
    ref_terms["loss"].backward()

    for key, value in half_terms.items():
        assert value.dtype == torch.float32, f"{name} {key} is {value.dtype}"
        assert torch.isfinite(value).all(), f"{name} {key} = {value}"
        torch.testing.assert_close(value, ref_terms[key], rtol=0.0, atol=0.0)
    half_leaves, ref_leaves = _grad_leaves(half_args), _grad_leaves(ref_args)
    assert half_leaves and len(half_leaves) == len(ref_leaves)
    for half, ref in zip(half_leaves, ref_leaves):
        assert half.grad is not None and half.grad.dtype == dtype
        assert torch.isfinite(half.grad).all(), f"{name}: non-finite gradient"
        assert half.grad.abs().sum() > 0, f"{name}: all-zero gradient for an input of shape {tuple(half.shape)}"
        torch.testing.assert_close(half.grad, ref.grad.to(dtype), rtol=0.0, atol=0.0)


def test_the_inputs_make_a_float16_lncc_nan():
    """What the float32 computation avoids: MONAI's LNCC body on these float16 images is NaN (0 / 0)."""
    lncc = SymmetricLocalNormalizedCrossCorrelationLoss().lncc
    moving, fixed = _image((BATCH, 1), 11), _image((BATCH, 1), 12)
    assert torch.isnan(lncc(moving.half(), fixed.half()))
    assert torch.isfinite(lncc(moving.half().float(), fixed.half().float()))


def test_float32_loss_casts_only_narrow_floats_and_keeps_the_signature():
    seen: dict[str, Any] = {}

    @float32_loss
    def record(x: torch.Tensor, outputs: Mapping[str, torch.Tensor], *, labels: torch.Tensor, w: float) -> float:
        """Docstring kept."""
        seen.update(x=x.dtype, out=outputs["a"].dtype, double=outputs["b"].dtype, labels=labels.dtype,
                    autocast=torch.is_autocast_enabled("cpu"))
        return w

    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert record(torch.ones(2, dtype=torch.bfloat16), {"a": torch.ones(1, dtype=torch.float16),
                      "b": torch.ones(1, dtype=torch.float64)}, labels=torch.ones(2, dtype=torch.long), w=2.5) == 2.5
    assert seen == {"x": torch.float32, "out": torch.float32, "double": torch.float64, "labels": torch.int64,
                    "autocast": False}
    assert record.__doc__ == "Docstring kept."
    assert list(inspect.signature(SymmetricLocalNormalizedCrossCorrelationLoss.forward).parameters) == [
        "self", "moving", "fixed", "ddf", "inverse_ddf"]
    with pytest.raises(TypeError, match="at least one tensor"):
        record(1.0, {}, labels=None, w=1.0)

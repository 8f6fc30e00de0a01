from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_cardiac.displacement import warp_image
from monai_cardiac.engines.label_propagation import propagate_labels, propagation_fields, temporal_blend_weights
from monai_cardiac.errors import CineDataError

H, W, T = 24, 28, 6


def _heart(centre=(12, 12)) -> torch.Tensor:
    """(H, W) labels: an LV square (3) in a myocardial frame (2), an RV block (1) beside it."""
    lab = torch.zeros(H, W, dtype=torch.long)
    r, c = centre
    lab[r - 4 : r + 5, c - 4 : c + 5] = 2
    lab[r - 2 : r + 3, c - 2 : c + 3] = 3
    lab[r - 3 : r + 4, c + 6 : c + 9] = 1
    return lab


def _translation(num_frames: int, step_cols: float) -> torch.Tensor:
    """u_{0->t} = (0, t * step) everywhere: frame t's content sits t * step columns to the LEFT of frame 0's."""
    ddf = torch.zeros(num_frames, 2, H, W)
    ddf[:, 1] = torch.arange(num_frames, dtype=torch.float32)[:, None, None] * step_cols
    return ddf


def test_identity_field_returns_the_label_on_every_frame():
    label = _heart()
    for mode in ("onehot", "nearest"):
        out = propagate_labels(label[None], [0], torch.zeros(T, 2, H, W), mode=mode)
        assert out.shape == (T, H, W) and out.dtype == torch.int64
        assert torch.equal(out, label.expand(T, H, W))


def test_known_translation_moves_the_label():
    label = _heart(centre=(12, 14))
    out = propagate_labels(label[None], [0], _translation(T, 1.0))
    for t in range(T):
        # pull convention: out_t(x) = label(x + (0, t)), i.e. the heart moves t columns left
        expected = torch.roll(label, shifts=-t, dims=1)
        assert torch.equal(out[t], expected), t
    assert torch.equal(propagate_labels(label[None], [0], _translation(T, 1.0), mode="nearest"), out)


def test_label_of_another_frame_goes_through_the_reference():
    # frame 3 labelled, fields from frame 0: frame t must be frame 3's label moved (t - 3) columns left
    label3 = _heart(centre=(12, 14))
    ddf = _translation(T, 1.0)
    out = propagate_labels(label3[None], [3], ddf)
    for t in range(T):
        assert torch.equal(out[t], torch.roll(label3, shifts=-(t - 3), dims=1)), t
    fields = propagation_fields(ddf, 3)
    assert torch.allclose(fields[:, 1], (torch.arange(T, dtype=torch.float32) - 3)[:, None, None].expand(T, H, W),
                          atol=1e-3)
    assert torch.allclose(fields[:, 0], torch.zeros(T, H, W), atol=1e-3)
    assert propagation_fields(ddf, 0) is not None and torch.equal(propagation_fields(ddf, 0), ddf)


def test_reference_other_than_frame_zero():
    # fields from reference frame 2 (zero there): a label at frame 2 is carried by them directly
    ddf = _translation(T, 1.0) - _translation(T, 1.0)[2:3]
    label = _heart(centre=(12, 14))
    out = propagate_labels(label[None], [2], ddf, reference=2)
    for t in range(T):
        assert torch.equal(out[t], torch.roll(label, shifts=-(t - 2), dims=1)), t


def test_temporal_blend_weights_values():
    w = temporal_blend_weights(10, [0, 4])
    assert w.shape == (10, 2)
    assert torch.allclose(w.sum(1), torch.ones(10))
    expected = {
        0: (1, 0), 1: (0.75, 0.25), 2: (0.5, 0.5), 4: (0, 1), 5: (1 / 6, 5 / 6), 7: (0.5, 0.5), 9: (5 / 6, 1 / 6),
    }
    for t, (w0, w4) in expected.items():
        assert w[t].tolist() == pytest.approx([w0, w4]), t
    # frames given in any order: columns follow the given order
    assert torch.equal(temporal_blend_weights(10, [4, 0]), w[:, [1, 0]])
    assert torch.equal(temporal_blend_weights(5, [3]), torch.ones(5, 1))
    # three labelled frames: only the two bracketing ones count
    w3 = temporal_blend_weights(12, [0, 4, 8])
    assert w3[6].tolist() == pytest.approx([0, 0.5, 0.5])
    assert w3[10].tolist() == pytest.approx([0.5, 0, 0.5])


def test_two_frame_blending_returns_the_labelled_frames_exactly_and_blends_between():
    num_frames = 10
    ddf = _translation(num_frames, 0.7)  # non-integer motion: labelled frames must still come back exactly
    ed, es = _heart(centre=(12, 10)), _heart(centre=(11, 13))
    out = propagate_labels(torch.stack([ed, es]), [0, 4], ddf)
    assert out.shape == (num_frames, H, W)
    assert torch.equal(out[0], ed) and torch.equal(out[4], es)

    # identity motion, two disjoint structures: each frame takes the label of the nearer labelled frame
    a = torch.zeros(H, W, dtype=torch.long)
    a[2:8, 2:8] = 3
    b = torch.zeros(H, W, dtype=torch.long)
    b[14:20, 16:22] = 1
    out = propagate_labels(torch.stack([a, b]), [0, 4], torch.zeros(num_frames, 2, H, W))
    for t, nearer in {1: a, 3: b, 5: b, 9: a}.items():
        assert torch.equal(out[t], nearer), t
    # at equal distance (t = 2, t = 7) the blend of 0.5 / 0.5 keeps background over a lone structure
    assert int(out[2].count_nonzero()) == 0 and int(out[7].count_nonzero()) == 0


def test_blend_of_two_labels_matches_the_weighted_one_hot_vote():
    num_frames = 8
    ddf = _translation(num_frames, 0.5)
    ed, es = _heart(centre=(12, 11)), _heart(centre=(12, 14))
    out = propagate_labels(torch.stack([ed, es]), [0, 3], ddf)
    weights = temporal_blend_weights(num_frames, [0, 3])
    t = 6  # 3 frames after ES (3), 2 before the next ED (8 = 0): weights 3/5 ED, 2/5 ES
    scores = torch.zeros(4, H, W)
    for k, (lab, frame) in enumerate(((ed, 0), (es, 3))):
        field = propagation_fields(ddf, frame)[t : t + 1]
        onehot = torch.nn.functional.one_hot(lab, 4).permute(2, 0, 1)[None].float()
        scores += weights[t, k] * warp_image(onehot, field)[0]
    assert weights[t].tolist() == pytest.approx([3 / 5, 2 / 5])
    assert torch.equal(out[t], scores.argmax(0))


def test_three_dimensional_fields():
    label = torch.zeros(4, 10, 12, dtype=torch.long)
    label[1:3, 3:7, 3:7] = 3
    ddf = torch.zeros(3, 3, 4, 10, 12)
    ddf[:, 2] = torch.tensor([0.0, 1.0, 2.0])[:, None, None, None]
    out = propagate_labels(label[None], [0], ddf)
    assert out.shape == (3, 4, 10, 12)
    assert torch.equal(out[2], torch.roll(label, shifts=-2, dims=2))


def test_numpy_inputs():
    out = propagate_labels(_heart().numpy()[None].astype(np.uint8), [0], np.zeros((T, 2, H, W), np.float32))
    assert torch.equal(out[3], _heart())


@pytest.mark.parametrize(
    "labels, frames, ddf, match",
    [
        (torch.zeros(1, H, W), [0], torch.zeros(T, H, W), "tracking fields"),  # no component axis
        (torch.zeros(1, H, W), [0], torch.zeros(T, 3, H, W), "tracking fields"),  # 3 components on a 2D grid
        (torch.zeros(1, H, W + 1), [0], torch.zeros(T, 2, H, W), "expected labels"),  # wrong label size
        (torch.zeros(H, W), [0], torch.zeros(T, 2, H, W), "expected labels"),  # no frame axis
        (torch.zeros(2, H, W), [0], torch.zeros(T, 2, H, W), "expected labels"),  # two labels, one frame
        (torch.full((1, H, W), 5.0), [0], torch.zeros(T, 2, H, W), "outside the classes"),
        (torch.full((1, H, W), 1.5), [0], torch.zeros(T, 2, H, W), "non-integer"),
        (torch.zeros(1, H, W), [T], torch.zeros(T, 2, H, W), "outside the"),
        (torch.zeros(2, H, W), [1, 1], torch.zeros(T, 2, H, W), "distinct"),
        (torch.zeros(0, H, W), [], torch.zeros(T, 2, H, W), "at least one"),
        (torch.zeros(1, H, W), [0], torch.full((T, 2, H, W), float("nan")), "finite"),
    ],
)
def test_bad_inputs_raise_cine_data_error(labels, frames, ddf, match):
    with pytest.raises(CineDataError, match=match):
        propagate_labels(labels, frames, ddf)


def test_bad_reference_and_mode():
    with pytest.raises(CineDataError, match="outside"):
        propagate_labels(torch.zeros(1, H, W), [0], torch.zeros(T, 2, H, W), reference=T)
    with pytest.raises(ValueError):
        propagate_labels(torch.zeros(1, H, W), [0], torch.zeros(T, 2, H, W), mode="cubic")
    with pytest.raises(CineDataError, match="outside"):
        temporal_blend_weights(4, [4])

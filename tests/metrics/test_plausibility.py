from __future__ import annotations

import math

from monai_cardiac.metrics.plausibility import PLAUSIBLE_RANGES, plausibility_flags


def test_an_ordinary_acdc_cine_has_no_flag():
    volumes = {"lv_edv_ml": 150.0, "rv_edv_ml": 160.0, "lv_ef": 0.6, "rv_ef": 0.5}
    assert plausibility_flags((1.4, 1.4, 10.0), (216, 256), (96, 96), 30, volumes) == []
    assert plausibility_flags(image_size=(100, 95), roi_size=(96, 96)) == []  # one column of padding is not news


def test_each_implausible_input_or_result_is_named():
    flags = plausibility_flags((1000.0, 1000.0, 10.0), (8, 8), (96, 96), 3,
                               {"lv_edv_ml": 4e9, "lv_ef": math.nan, "rv_ef": 0.95})
    assert flags == [
        "in_plane_spacing_mm 1000 mm outside [0.4, 4] mm",  # the two in-plane axes give one flag
        "image (8, 8) less than half the network's crop (96, 96) (mostly zero padding)",
        "num_frames 3 outside [10, 100]",
        "lv_edv_ml 4e+09 mL outside [20, 600] mL",
        "lv_ef is undefined",
        "rv_ef 0.95 outside [0.05, 0.9]",
    ]
    assert plausibility_flags(spacing_mm=(1.0, 1.0, 0.5)) == ["slice_spacing_mm 0.5 mm outside [1, 25] mm"]
    low, high = PLAUSIBLE_RANGES["lv_ef"]
    assert plausibility_flags(volumes={"lv_ef": low}) == plausibility_flags(volumes={"lv_ef": high}) == []

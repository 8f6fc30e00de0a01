"""The per-subject report: the overlay GIF's frames and contours, and the HTML page."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from monai_cardiac.displacement import propagate_labels
from monai_cardiac.engines.subject_report import (
    CONTOUR_COLOURS,
    write_subject_report,
    write_tracking_gif,
)
from monai_cardiac.errors import CineDataError


def _ring_labels(size: int = 32) -> np.ndarray:
    """ED labels (Z=2, H, W): an LV disk inside a myocardial ring, an RV patch beside it."""
    yy, xx = np.mgrid[:size, :size]
    radius = np.hypot(yy - 16, xx - 16)
    labels = np.zeros((2, size, size), np.int64)
    labels[:, radius < 9] = 2
    labels[:, radius < 6] = 3
    labels[:, 2:6, 4:12] = 1
    return labels


def test_the_gif_shows_every_frame_with_the_contours_where_the_labels_are(tmp_path):
    ed = _ring_labels()
    ddf = np.zeros((4, 2, 2, 32, 32), np.float32)  # (T, Z, 2, H, W)
    ddf[3, :, 1] = -2.0  # frame 3 pulls from 2 voxels to the left: everything moves 2 voxels right
    labels = propagate_labels(ed, ddf).numpy()
    image = np.random.default_rng(0).uniform(size=labels.shape).astype(np.float32)
    path = write_tracking_gif(tmp_path / "s.gif", image, labels, ed=1, margin=2, zoom=2)
    gif = Image.open(path)
    assert gif.n_frames == 4
    # labels span rows 2-24 and columns 4-26 (frame 3 moved right): crop with margin 2, 2 slices side by side, zoom 2
    assert gif.size == (2 * 2 * 27, 2 * 27)
    frames = []
    for t in range(4):
        gif.seek(t)
        frames.append(np.asarray(gif.convert("RGB")))
    left_rim = (16 - 0) * 2, (8 - 2) * 2  # the myocardium's leftmost pixel of row 16 (column 8), in the picture
    assert tuple(frames[0][left_rim]) == CONTOUR_COLOURS["Myo"]
    assert tuple(frames[3][left_rim]) != CONTOUR_COLOURS["Myo"]  # moved right by 2 voxels = 4 pixels
    assert tuple(frames[3][left_rim[0], left_rim[1] + 4]) == CONTOUR_COLOURS["Myo"]
    assert tuple(frames[0][(16 - 0) * 2, (11 - 2) * 2]) == CONTOUR_COLOURS["LV"]  # the LV's leftmost pixel, column 11
    assert (frames[1][0] == 255).all() and not (frames[0][0] == 255).all()  # the ED bar
    with pytest.raises(CineDataError, match="one shape"):
        write_tracking_gif(tmp_path / "bad.gif", image[:, :1], labels)
    with pytest.raises(CineDataError, match="no structure"):
        write_tracking_gif(tmp_path / "empty.gif", image, np.zeros_like(labels))


def test_the_report_gathers_figures_pictures_and_escaped_warnings(tmp_path):
    summary = {"lv_edv_ml": 120.0, "lv_esv_ml": 50.0, "lv_ef": 70 / 120, "lv_es_frame": 9,
               "rv_edv_ml": 130.0, "rv_esv_ml": 60.0, "rv_ef": 70 / 130, "rv_es_frame": 10}
    strain = {"global": {"peak_radial_percent": 31.25, "peak_circumferential_percent": -17.5},
              "segments": {1: {"name": "basal anterior", "peak_radial_percent": 28.0,
                               "peak_circumferential_percent": -16.0, "thickness_ed_mm": 8.0,
                               "thickness_es_mm": 11.0, "thickening_percent": 37.5}}}
    files = {"plot": str(tmp_path / "s_volumes.png"), "overlay": str(tmp_path / "s_overlay.gif")}
    path = write_subject_report(tmp_path, "s", files, summary, ["EF <odd> & high"], strain, {"source": "c.nii"})
    page = (tmp_path / "s_report.html").read_text()
    assert path.endswith("s_report.html")
    assert "<td>58.3</td>" in page and "<td>53.8</td>" in page  # LV and RV EF (%)
    assert "<td>31.2</td>" in page and "<td>-17.5</td>" in page and "basal anterior" in page
    assert 'src="s_volumes.png"' in page and 'src="s_overlay.gif"' in page and "bullseye" not in page
    assert "EF &lt;odd&gt; &amp; high" in page and "<odd>" not in page
    assert "c.nii" in page

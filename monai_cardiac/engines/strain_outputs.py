"""Per-subject strain files of the inference bundles: curves, segment table and bull's-eye plot."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monai.utils import optional_import

__all__ = ["AHA_BULLSEYE_SECTORS", "plot_bullseye", "write_strain_outputs"]

Figure, has_matplotlib = optional_import("matplotlib.figure", name="Figure")
Wedge, _ = optional_import("matplotlib.patches", name="Wedge")
colormaps, _ = optional_import("matplotlib", name="colormaps")
Normalize, _ = optional_import("matplotlib.colors", name="Normalize")
ScalarMappable, _ = optional_import("matplotlib.cm", name="ScalarMappable")

AHA_BULLSEYE_SECTORS = {
    **{sid: (2, 60.0 + 60.0 * (sid - 1)) for sid in range(1, 7)},
    **{sid: (1, 60.0 + 60.0 * (sid - 7)) for sid in range(7, 13)},
    **{sid: (0, 45.0 + 90.0 * (sid - 13)) for sid in range(13, 17)},
}
"""Bull's-eye place of each AHA segment: ``(ring, start angle in degrees)`` with ring 0 apical (innermost), 1 mid,
2 basal, angles counter-clockwise from 3 o'clock: anterior at the top, septum on the left (the standard display)."""

_RING_RADII = ((0.0, 1.0), (1.0, 2.0), (2.0, 3.0))


def plot_bullseye(path: str | Path, values: Mapping[int, float], title: str, unit: str = "%") -> None:
    """Draw a 16-segment AHA bull's-eye of one value per segment (missing segments grey) into a PNG.

    Args:
        path: the PNG to write.
        values: ``{segment id 1-16: value}``.
        title: figure title.
        unit: colour-bar label.

    Raises:
        ValueError: a segment id outside 1-16.
    """
    bad = [sid for sid in values if sid not in AHA_BULLSEYE_SECTORS]
    if bad:
        raise ValueError(f"AHA segment ids are 1-16, got {bad}.")
    finite = [v for v in values.values() if math.isfinite(v)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    norm = Normalize(vmin=low, vmax=high if high > low else low + 1.0)
    cmap = colormaps["viridis"]
    fig = Figure(figsize=(5.0, 4.4), dpi=100)
    ax = fig.add_subplot()
    for sid, (ring, start) in AHA_BULLSEYE_SECTORS.items():
        inner, outer = _RING_RADII[ring]
        width = 90.0 if ring == 0 else 60.0
        value = values.get(sid, float("nan"))
        color = cmap(norm(value)) if math.isfinite(value) else (0.8, 0.8, 0.8, 1.0)
        ax.add_patch(Wedge((0.0, 0.0), outer, start, start + width, width=outer - inner, facecolor=color,
                           edgecolor="white", linewidth=1.5))
        middle = math.radians(start + width / 2)
        radius = (inner + outer) / 2 if ring else 0.55
        label = f"{sid}\n{value:.1f}" if math.isfinite(value) else f"{sid}\n-"
        ax.text(radius * math.cos(middle), radius * math.sin(middle), label, ha="center", va="center", fontsize=7)
    ax.set_xlim(-3.2, 3.2)
    ax.set_ylim(-3.2, 3.2)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.8).set_label(unit)
    ax.set_title(title, fontsize=9)
    fig.savefig(str(path))


def write_strain_outputs(folder: str | Path, subject: str, result: Mapping[str, Any], header: Mapping[str, Any],
                         plot: bool = True) -> dict[str, str]:
    """Write :func:`~monai_cardiac.metrics.stack_strain.stack_strain`'s result of one subject.

    Files:

    - ``<subject>_strain.csv``: ``# key: value`` header lines (``header``, then the global peaks), then one row per
      frame from ED (``frame`` in file order): global radial and circumferential strain (%) and each segment's;
    - ``<subject>_strain_segments.csv``: one row per AHA segment found: name, level, peak radial and
      circumferential strain (%), frames to peak, wall thickness at ED and ES (mm) and thickening (%);
    - ``<subject>_strain_bullseye.png``: peak circumferential strain per segment (if ``plot`` and matplotlib).

    Args:
        folder: the subject's output folder (exists).
        subject: file prefix.
        result: the strain result.
        header: ``# key: value`` lines for the curve table (subject, source, spacing, ...).
        plot: draw the bull's-eye.

    Returns:
        ``{"strain": path, "strain_segments": path[, "strain_bullseye": path]}``.
    """
    folder = Path(folder)
    files = {"strain": folder / f"{subject}_strain.csv", "strain_segments": folder / f"{subject}_strain_segments.csv"}
    glob, segments = result["global"], result["segments"]
    lines = {**header, "es_frame": result["es"],
             "peak_global_radial_percent": f"{glob['peak_radial_percent']:.2f}",
             "peak_global_circumferential_percent": f"{glob['peak_circumferential_percent']:.2f}",
             "convention": "Green-Lagrange strain on the ED myocardium, % (radial > 0 thickening, circumferential < 0 "
                           "shortening); AHA segments, slice 0 basal (docs/strain.md)"}
    with open(files["strain"], "w", newline="") as f:
        for key, value in lines.items():
            f.write(f"# {key}: {value}\n")
        writer = csv.writer(f)
        columns = ["frame", "global_radial_percent", "global_circumferential_percent"]
        for sid in segments:
            columns += [f"seg{sid}_radial_percent", f"seg{sid}_circumferential_percent"]
        writer.writerow(columns)
        for k, frame in enumerate(result["frames"]):
            row = [frame, f"{glob['radial_percent'][k]:.3f}", f"{glob['circumferential_percent'][k]:.3f}"]
            for entry in segments.values():
                row += [f"{entry['radial_percent'][k]:.3f}", f"{entry['circumferential_percent'][k]:.3f}"]
            writer.writerow(row)
    with open(files["strain_segments"], "w", newline="") as f:
        writer = csv.writer(f)
        keys = ("peak_radial_percent", "peak_circumferential_percent", "time_to_peak_radial",
                "time_to_peak_circumferential", "thickness_ed_mm", "thickness_es_mm", "thickening_percent",
                "num_voxels")
        writer.writerow(["segment", "name", "level", *keys])
        for sid, entry in segments.items():
            writer.writerow([sid, entry["name"], entry["level"],
                             *(f"{entry[k]:.3f}" if isinstance(entry[k], float) else entry[k] for k in keys)])
    if plot and has_matplotlib:
        files["strain_bullseye"] = folder / f"{subject}_strain_bullseye.png"
        plot_bullseye(files["strain_bullseye"], {sid: e["peak_circumferential_percent"] for sid, e in segments.items()},
                      f"{subject}: peak circumferential strain per AHA segment (%)")
    return {k: str(v) for k, v in files.items()}

"""Per-subject visual report of the inference bundles: an animated overlay of the tracked contours and one HTML page.

:func:`write_tracking_gif` draws, on every frame of a cine, the contours of its tracked labels, e.g. the ED labels
carried to each frame by the tracking field ``u_{ED->t}`` (myocardium yellow, LV red, RV cyan), all slices side by
side, cropped around the heart. :func:`write_subject_report` gathers a subject's written files (volume curves,
overlay, bull's-eye) and figures (EDV / ESV / EF, peak global strain, the AHA segment table, the plausibility
warnings) in ``<subject>_report.html``, which links its pictures by file name, so the subject's folder can be moved
or shared as it is.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.utils import optional_import

from monai_cardiac.data.nifti import LABEL_IDS
from monai_cardiac.errors import CineDataError

__all__ = ["CONTOUR_COLOURS", "write_subject_report", "write_tracking_gif"]

Image, has_pillow = optional_import("PIL.Image")

CONTOUR_COLOURS = {"Myo": (255, 220, 0), "LV": (230, 40, 40), "RV": (0, 210, 230)}
"""RGB colour of each structure's contour in the overlay."""

_SOURCE = "subject_report"
_GREY_LEVELS = 252  # of the GIF's 256 palette entries; the rest are the contour colours and white


def _contour(mask: np.ndarray) -> np.ndarray:
    """Pixels of a boolean mask ``(H, W)`` with a 4-neighbour outside it (the mask's edge, one pixel wide)."""
    padded = np.pad(mask, 1, mode="constant")
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def write_tracking_gif(path: str | Path, image: np.ndarray, labels: np.ndarray, ed: int = 0, margin: int = 8,
                       zoom: int = 1, frame_ms: int = 80) -> str:
    """Write an animated GIF of a cine with the contours of its tracked labels, every slice side by side.

    Args:
        path: the GIF to write.
        image: the cine ``(T, Z, H, W)`` (any intensity range; shown between its 1st and 99th percentiles).
        labels: the tracked labels ``(T, Z, H, W)`` (e.g. the ED labels through ``u_{ED->t}``,
            :func:`~monai_cardiac.displacement.propagate_labels`), 0 BG, 1 RV, 2 Myo, 3 LV.
        ed: the ED frame, marked by a white bar at the top of its picture.
        margin: pixels kept around the bounding box of the labels over all frames and slices.
        zoom: each pixel drawn as ``zoom x zoom`` pixels (1: the file stays small, about a byte per pixel and
            frame; the report enlarges it in the browser without smoothing).
        frame_ms: duration of one frame.

    Returns:
        the path written.

    Raises:
        CineDataError: shapes that disagree, no labelled voxel, or non-finite intensities.
        RuntimeError: Pillow is not installed.
    """
    if not has_pillow:
        raise RuntimeError("writing the overlay GIF needs Pillow (pip install pillow).")
    image, labels = np.asarray(image, dtype=np.float32), np.asarray(labels)
    if image.ndim != 4 or image.shape != labels.shape:
        raise CineDataError(f"expected a cine and its labels (T, Z, H, W) of one shape, got {image.shape} and "
                            f"{labels.shape}", str(path))
    if not np.isfinite(image).all():
        raise CineDataError("the cine holds non-finite values", str(path))
    found = np.argwhere((labels > 0).any(axis=(0, 1)))
    if found.size == 0:
        raise CineDataError("the labels hold no structure to draw", str(path))
    (top, left), (bottom, right) = found.min(0) - margin, found.max(0) + margin + 1
    top, left = max(int(top), 0), max(int(left), 0)
    image, labels = image[..., top:bottom, left:right], labels[..., top:bottom, left:right]
    # one fixed palette: _GREY_LEVELS grey levels, then the contour colours, then white (the ED bar), so that every
    # frame keeps its exact colours (GIF's own quantisation would shift them)
    low, high = np.percentile(image, [1, 99])
    grey = np.rint(np.clip((image - low) / max(high - low, 1e-6), 0, 1) * (_GREY_LEVELS - 1)).astype(np.uint8)
    colours = list(CONTOUR_COLOURS.values()) + [(255, 255, 255)]
    palette = [round(255 * i / (_GREY_LEVELS - 1)) for i in range(_GREY_LEVELS) for _ in range(3)]
    palette += [value for colour in colours for value in colour]
    frames, depth, height, width = image.shape
    columns = math.ceil(math.sqrt(depth))
    rows = math.ceil(depth / columns)
    pictures = []
    for t in range(frames):
        canvas = np.zeros((rows * height, columns * width), dtype=np.uint8)
        for z in range(depth):
            tile = grey[t, z].copy()
            for index, name in enumerate(CONTOUR_COLOURS, start=_GREY_LEVELS):
                tile[_contour(labels[t, z] == LABEL_IDS[name])] = index
            r, c = divmod(z, columns)
            canvas[r * height:(r + 1) * height, c * width:(c + 1) * width] = tile
        if t == ed:
            canvas[:2] = _GREY_LEVELS + len(colours) - 1
        picture = Image.fromarray(canvas.repeat(zoom, axis=0).repeat(zoom, axis=1), mode="P")
        picture.putpalette(palette)
        pictures.append(picture)
    pictures[0].save(str(path), save_all=True, append_images=pictures[1:], duration=frame_ms, loop=0,
                     optimize=False)
    return str(path)


def _table(header: Sequence[str] | None, rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table of escaped cells; ``header`` None: no header row."""
    head = "" if header is None else "<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _number(value: Any, digits: int = 1) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and math.isfinite(value) else "-"


def write_subject_report(folder: str | Path, subject: str, files: Mapping[str, str], summary: Mapping[str, Any],
                         flags: Sequence[str], strain: Mapping[str, Any] | None = None,
                         details: Mapping[str, Any] | None = None) -> str:
    """Write ``<subject>_report.html``: one page gathering a subject's figures and pictures.

    Args:
        folder: the subject's output folder (holds the pictures named in ``files``).
        subject: subject id (title and file prefix).
        files: ``{kind: path}`` of the subject's written files; ``plot`` (volume curves), ``overlay`` (the GIF) and
            ``strain_bullseye`` are shown when present, every file is listed.
        summary: the volume summary (``lv_edv_ml``, ``lv_esv_ml``, ``lv_ef``, ``lv_es_frame`` and the ``rv_`` ones).
        flags: the plausibility warnings (shown first when any).
        strain: a :func:`~monai_cardiac.metrics.stack_strain.stack_strain` result (``global`` peaks, ``segments``).
        details: ``{name: value}`` lines shown under the title (source, ED frame, spacing, notes).

    Returns:
        the path written.
    """
    folder = Path(folder)
    parts = [f"<h1>{html.escape(subject)}</h1>"]
    if details:
        parts.append(_table(None, [(k, v) for k, v in details.items()]))
    if flags:
        items = "".join(f"<li>{html.escape(f)}</li>" for f in flags)
        parts.append(f'<div class="warn"><b>Implausible input or result</b><ul>{items}</ul></div>')
    if "lv_edv_ml" in summary:
        rows = [(name.upper(), _number(summary[f"{name}_edv_ml"]), _number(summary[f"{name}_esv_ml"]),
                 _number(100 * summary[f"{name}_ef"]), summary[f"{name}_es_frame"]) for name in ("lv", "rv")]
        parts.append("<h2>Volumes</h2>" + _table(["", "EDV (mL)", "ESV (mL)", "EF (%)", "ES frame"], rows))
    pictures = [("plot", "Volume curves"), ("overlay", "Tracked contours (ED labels carried by u_ED->t; "
                                                       "Myo yellow, LV red, RV cyan; white bar: ED)"),
                ("strain_bullseye", "Peak circumferential strain per AHA segment")]
    for kind, caption in pictures:
        if kind in files:
            name = html.escape(Path(files[kind]).name)
            css = ' class="pixels"' if kind == "overlay" else ""
            parts.append(f'<figure><img src="{name}"{css} alt="{html.escape(caption)}"><figcaption>'
                         f"{html.escape(caption)}</figcaption></figure>")
    if strain:
        glob = strain["global"]
        parts.append("<h2>Strain (Green-Lagrange, % of the ED myocardium)</h2>" + _table(
            ["", "peak radial", "peak circumferential"],
            [("global", _number(glob["peak_radial_percent"]), _number(glob["peak_circumferential_percent"]))]))
        segment_rows = [
            (sid, e["name"], _number(e["peak_radial_percent"]), _number(e["peak_circumferential_percent"]),
             _number(e["thickness_ed_mm"]), _number(e["thickness_es_mm"]), _number(e["thickening_percent"]))
            for sid, e in strain["segments"].items()
        ]
        parts.append(_table(["segment", "name", "peak radial (%)", "peak circumferential (%)", "wall ED (mm)",
                             "wall ES (mm)", "thickening (%)"], segment_rows))
    listing = "".join(f'<li><a href="{html.escape(Path(p).name)}">{html.escape(Path(p).name)}</a></li>'
                      for p in files.values())
    parts.append(f"<h2>Files</h2><ul>{listing}</ul>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:auto}table{border-collapse:collapse;margin:0.5em 0}"
             "td,th{border:1px solid #bbb;padding:2px 8px}.warn{background:#fff3cd;padding:0.5em;border:1px solid "
             "#e0c060}img{max-width:100%}img.pixels{width:100%;image-rendering:pixelated}")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(subject)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
    path = folder / f"{subject}_report.html"
    path.write_text(page, encoding="utf-8")
    return str(path)

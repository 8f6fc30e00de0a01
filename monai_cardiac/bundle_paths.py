"""Where a bundle's folder is, so that its configs run from any working directory."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["bundle_root"]

_CONFIG_PATHS = re.compile(r"[^\[\]'\",\s]+\.(?:json|ya?ml)")


def _command_line_configs(argv: Sequence[str]) -> list[Path]:
    """Config files named by ``--config_file`` on a ``python -m monai.bundle run`` command line (a path or a list)."""
    values = []
    for i, arg in enumerate(argv):
        if arg == "--config_file" and i + 1 < len(argv):
            values.append(argv[i + 1])
        elif arg.startswith("--config_file="):
            values.append(arg.split("=", 1)[1])
    return [Path(p) for value in values for p in _CONFIG_PATHS.findall(value)]


def bundle_root(name: str, argv: Sequence[str] | None = None) -> str:
    """The folder of the bundle ``name`` (e.g. ``"joint"``), the default of the configs' ``bundle_root``.

    In order: the bundle folder of a config file named by ``--config_file`` on the command line (a file in
    ``<folder>/configs/`` where ``<folder>`` is called ``name``), as written there; ``bundles/<name>`` under the
    working directory (the repository root); the repository's ``bundles/<name>`` beside this package (an
    editable install). ``--bundle_root`` on the command line overrides the result, as for any config key.

    Args:
        name: the bundle's folder name.
        argv: the command line to read (default ``sys.argv``).

    Returns:
        the folder, relative where it was found relatively (the first two cases), else absolute; ``bundles/<name>``
        when none exists, so that the file that is then not found is named in the error.
    """
    for config in _command_line_configs(sys.argv if argv is None else argv):
        if config.parent.name == "configs" and config.parent.parent.name == name and config.is_file():
            return str(config.parent.parent)
    local = os.path.join("bundles", name)
    if os.path.isdir(os.path.join(local, "configs")):
        return local
    beside = Path(__file__).resolve().parents[1] / "bundles" / name
    return str(beside) if (beside / "configs").is_dir() else local

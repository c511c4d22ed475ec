"""File helpers: atomic writes, PNGs that carry their generation settings, image grids."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

from ._version import __version__
from .validation import InputError

PNG_SETTINGS_KEY = "dimsum:settings"


def atomic_write(path: str | Path, write_fn: Callable[[str], Any]) -> Path:
    """Write through a temporary file in the same folder, fsync, then rename over `path`.

    A crash mid-write leaves the previous file intact (never a half-written one).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ---- saving images with their settings (SPEC section 9) -------------------------------------
def png_metadata(settings: dict[str, Any], index: int | None = None) -> PngImagePlugin.PngInfo:
    """PNG text chunks: the settings that reproduce the image, and an AI-generated marker.

    settings: `SamplingSettings.to_dict()` plus provenance (class_names, software, nfe);
    index: which image of the run this is (its class and seed are the index-th).
    """
    info = PngImagePlugin.PngInfo()
    s = dict(settings)
    if index is not None:
        s = {**s, "index": index}
    info.add_text(PNG_SETTINGS_KEY, json.dumps(s, sort_keys=True))
    info.add_text("AI-generated", "true")
    info.add_text("Software", str(settings.get("software", f"dimsum {__version__}")))
    info.add_text("Description", "AI-generated image (DiMSUM diffusion model)")
    return info


def save_png(
    image: Image.Image | np.ndarray,
    path: str | Path,
    settings: dict[str, Any],
    index: int | None = None,
) -> Path:
    """Save a PNG carrying its generation settings; written atomically."""
    img = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    return atomic_write(
        path, lambda p: img.save(p, format="PNG", pnginfo=png_metadata(settings, index))
    )


def read_png_settings(path: str | Path) -> dict[str, Any]:
    """The settings a saved PNG carries, as written (raises InputError when it has none).
    `SamplingSettings.from_dict` reads them, whatever their age."""
    with Image.open(path) as im:
        text = im.text.get(PNG_SETTINGS_KEY) if hasattr(im, "text") else None
    if not text:
        raise InputError(f"{str(path)!r} carries no dimsum settings")
    return json.loads(text)


def image_grid(array: np.ndarray, cols: int | None = None, pad: int = 2) -> np.ndarray:
    """(N, H, W, 3) uint8 -> one grid image (white padding)."""
    n, h, w, _ = array.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, im in enumerate(array):
        r, c = divmod(i, cols)
        grid[
            pad + r * (h + pad) : pad + r * (h + pad) + h,
            pad + c * (w + pad) : pad + c * (w + pad) + w,
        ] = im
    return grid

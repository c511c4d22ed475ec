"""Small image helpers: nearest-neighbour upscaling, tiling, colour maps, labelled mosaics, PNG.

Everything works on uint8 (H, W, 3) arrays. Images are enlarged with nearest neighbour (each
pixel or token stays a crisp square) and written as PNG (lossless: feature maps must not get
compression artefacts).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BG = (255, 255, 255)
INK = (40, 40, 48)


def upscale(img: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of (H, W[, 3]) by an integer factor."""
    if factor <= 1:
        return img
    return np.repeat(np.repeat(img, factor, axis=0), factor, axis=1)


def fit_factor(side: int, target: int = 128) -> int:
    """Integer enlargement that brings `side` pixels close to `target` (at least 1)."""
    return max(1, int(round(target / max(side, 1))))


def grid(
    images: list[np.ndarray] | np.ndarray, cols: int, pad: int = 4, bg: tuple[int, int, int] = BG
) -> np.ndarray:
    """Tile equally sized (h, w, 3) images in rows of `cols` with `pad` pixels between."""
    images = list(images)
    h, w = images[0].shape[:2]
    rows = (len(images) + cols - 1) // cols
    cols = min(cols, len(images))
    out = np.empty((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, 3), np.uint8)
    out[:] = bg
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = im
    return out


def stack_rows(rows: list[np.ndarray], pad: int = 4, bg: tuple[int, int, int] = BG) -> np.ndarray:
    """Stack images vertically (left aligned, padded to the widest)."""
    width = max(r.shape[1] for r in rows)
    height = sum(r.shape[0] for r in rows) + pad * (len(rows) - 1)
    out = np.empty((height, width, 3), np.uint8)
    out[:] = bg
    y = 0
    for r in rows:
        out[y : y + r.shape[0], : r.shape[1]] = r
        y += r.shape[0] + pad
    return out


LABEL_SPACE = 34  # white space on top of view images: the component's label badge sits there


def pad_top(img: np.ndarray, pixels: int = LABEL_SPACE) -> np.ndarray:
    """Add white rows on top (so gradio's label badge and buttons never cover content)."""
    out = np.empty((img.shape[0] + pixels, img.shape[1], 3), np.uint8)
    out[:pixels] = BG
    out[pixels:] = img
    return out


def pair_frame(top: np.ndarray, bottom: np.ndarray, factor: int, max_cols: int = 8) -> np.ndarray:
    """Trajectory frame: for each image, x_t above and the clean prediction below.

    top, bottom (N, h, w, 3) uint8 -> one image; images wrap after `max_cols` columns.
    """
    n = top.shape[0]
    cols = min(n, max_cols)
    bands = []
    for start in range(0, n, cols):
        a = grid([upscale(x, factor) for x in top[start : start + cols]], cols)
        b = grid([upscale(x, factor) for x in bottom[start : start + cols]], cols)
        bands.append(stack_rows([a, b], pad=4))
    return pad_top(stack_rows(bands, pad=14))


@lru_cache(maxsize=8)
def _lut(name: str) -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def colorize(
    values: np.ndarray, vmin: float | None = None, vmax: float | None = None, cmap: str = "magma"
) -> np.ndarray:
    """Scalar map (H, W) -> (H, W, 3) uint8 through a matplotlib colour map."""
    v = np.asarray(values, dtype=np.float32)
    lo = float(np.nanmin(v)) if vmin is None else vmin
    hi = float(np.nanmax(v)) if vmax is None else vmax
    unit = np.clip((v - lo) / max(hi - lo, 1e-12), 0, 1)
    return _lut(cmap)[np.nan_to_num(unit * 255).astype(np.int64)]


def signed_rgb(x: np.ndarray) -> np.ndarray:
    """Float (3, H, W) roughly in [-1, 1] -> uint8 (H, W, 3) (values clipped)."""
    return ((np.clip(np.transpose(x, (1, 2, 0)), -1, 1) + 1) * 127.5).round().astype(np.uint8)


def normalized_rgb(x: np.ndarray) -> np.ndarray:
    """Float (3, H, W) -> uint8 (H, W, 3) stretched to its own min..max (for LL bands)."""
    lo, hi = float(x.min()), float(x.max())
    return ((np.transpose(x, (1, 2, 0)) - lo) / max(hi - lo, 1e-12) * 255).round().astype(np.uint8)


@lru_cache(maxsize=4)
def font(size: int = 13) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """DejaVu Sans from matplotlib (a dependency; covers arrows and sub/superscripts)."""
    try:
        import matplotlib

        ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        return ImageFont.truetype(str(ttf), size)
    except (ImportError, OSError):
        try:
            return ImageFont.load_default(size=size)
        except (TypeError, OSError):  # Pillow without FreeType: the small bitmap font
            return ImageFont.load_default()


def labelled(img: np.ndarray, label: str, size: int = 13, width: int | None = None) -> np.ndarray:
    """Put a one-line caption above an image (the strip is as wide as the image or `width`)."""
    f = font(size)
    w = max(img.shape[1], width or 0)
    strip = size + 8
    canvas = Image.new("RGB", (w, img.shape[0] + strip), BG)
    canvas.paste(Image.fromarray(img), (0, strip))
    draw = ImageDraw.Draw(canvas)
    text = label
    if draw.textlength(text, font=f) > w - 2:  # too long: cut and mark with an ellipsis
        while text and draw.textlength(text + "…", font=f) > w - 2:
            text = text[:-1]
        text = text.rstrip() + "…"
    draw.text((1, 2), text, fill=INK, font=f)
    return np.asarray(canvas)


def tick_text(value: float) -> str:
    """A colour-bar tick: 3 significant digits, no trailing zeros."""
    return f"{value:.3g}"


def colorbar(
    vmin: float,
    vmax: float,
    label: str,
    width: int,
    cmap: str = "magma",
    size: int = 12,
    bar_height: int = 12,
) -> np.ndarray:
    """A horizontal colour bar `width` pixels wide: the gradient of `cmap` from vmin to vmax,
    ticks at both ends and the middle, and `label` (what the colour measures, with its unit)
    underneath. Stack it under the images it describes (`stack_rows`)."""
    f = font(size)
    margin = 24  # room for the end ticks' text
    inner = max(width - 2 * margin, 16)
    canvas = Image.new("RGB", (max(width, inner + 2 * margin), bar_height + 2 * size + 18), BG)
    gradient = _lut(cmap)[np.linspace(0, 255, inner).astype(np.int64)]
    canvas.paste(Image.fromarray(np.repeat(gradient[None], bar_height, 0)), (margin, 2))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((margin - 1, 1, margin + inner, bar_height + 2), outline=INK)
    for frac in (0.0, 0.5, 1.0):
        x = margin + frac * (inner - 1)
        draw.line((x, bar_height + 2, x, bar_height + 5), fill=INK)
        text = tick_text(vmin + frac * (vmax - vmin))
        draw.text((x - draw.textlength(text, font=f) / 2, bar_height + 6), text, fill=INK, font=f)
    text = label
    if draw.textlength(text, font=f) > canvas.width - 4:  # too long: cut, mark with "…"
        while text and draw.textlength(text + "…", font=f) > canvas.width - 4:
            text = text[:-1]
        text = text.rstrip() + "…"
    y = bar_height + size + 10
    draw.text(((canvas.width - draw.textlength(text, font=f)) / 2, y), text, fill=INK, font=f)
    return np.asarray(canvas)


def labelled_grid(
    tiles: list[np.ndarray], labels: list[str], cols: int, pad: int = 8, size: int = 12
) -> np.ndarray:
    """Tiles with captions, in rows of `cols` (tiles may differ in size: cells take the max)."""
    cells = [labelled(t, lab, size=size) for t, lab in zip(tiles, labels, strict=True)]
    h = max(c.shape[0] for c in cells)
    w = max(c.shape[1] for c in cells)
    padded = []
    for c in cells:
        canvas = np.empty((h, w, 3), np.uint8)
        canvas[:] = BG
        canvas[: c.shape[0], : c.shape[1]] = c
        padded.append(canvas)
    return grid(padded, cols, pad=pad)


def write_png(img: np.ndarray, path: str | Path) -> str:
    """Lossless PNG, fast compression (these files are short-lived view renders)."""
    Image.fromarray(img).save(path, format="PNG", compress_level=1)
    return str(path)

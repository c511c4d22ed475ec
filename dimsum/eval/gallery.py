"""Precision gallery: which generated samples count as precise, and what they resemble.

Precision (k-NN, Kynkaanniemi et al. 2019) is a count of generated samples inside the real
manifold; a number alone does not say *what* the imprecise samples look like. The gallery shows,
per class, samples inside the manifold (green frame) and outside it (red frame), each above its
nearest training image in the feature classifier's space (the image it is measured against).
`dimsum eval --gallery out.png` writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_write

INSIDE = (40, 160, 60)  # frame colour of a sample inside the real manifold
OUTSIDE = (210, 40, 40)


def nearest_indices(query: np.ndarray | torch.Tensor, ref: np.ndarray | torch.Tensor) -> np.ndarray:
    """(M,) index of each (M, D) query's nearest (N, D) reference row (Euclidean)."""
    q = torch.as_tensor(query).detach().to("cpu", torch.float64)  # features may be on a GPU
    r = torch.as_tensor(ref).detach().to("cpu", torch.float64)
    return torch.cdist(q, r).argmin(dim=1).numpy()


def pick(inside: np.ndarray, per_class: int) -> list[int]:
    """Up to `per_class` positions: half inside, half outside (topped up from the other side).

    Positions keep the evaluation's order (ascending seeds), so the gallery is reproducible.
    """
    ins, outs = np.flatnonzero(inside).tolist(), np.flatnonzero(~inside).tolist()
    n_in = min(len(ins), max(per_class // 2, per_class - len(outs)))
    n_out = min(len(outs), per_class - n_in)
    return ins[:n_in] + outs[:n_out]


def framed(image: np.ndarray, colour: tuple[int, int, int] | None, border: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (H + 2b, W + 2b, 3) with a coloured (or white) frame."""
    h, w, _ = image.shape
    out = np.full((h + 2 * border, w + 2 * border, 3), 255, np.uint8)
    if colour is not None:
        out[:] = colour
    out[border : border + h, border : border + w] = image
    return out


def class_strip(
    fake: np.ndarray, real: np.ndarray, inside: np.ndarray, per_class: int, border: int = 2
) -> np.ndarray:
    """Two rows: generated samples (framed by membership) over their nearest training images.

    fake / real: (K, H, W, 3) uint8 with K <= per_class; inside: (K,) bool. Empty slots stay
    white so every class's strip has the same width.
    """
    h, w = fake.shape[1:3] if len(fake) else real.shape[1:3]
    cell_h, cell_w = h + 2 * border, w + 2 * border
    strip = np.full((2 * cell_h + border, per_class * (cell_w + border), 3), 255, np.uint8)
    for i, (f, r, ok) in enumerate(zip(fake, real, inside, strict=True)):
        x = i * (cell_w + border)
        strip[:cell_h, x : x + cell_w] = framed(f, INSIDE if ok else OUTSIDE, border)
        strip[cell_h + border :, x : x + cell_w] = framed(r, None, border)
    return strip


def precision_gallery(
    path: str | Path,
    fake: np.ndarray,
    fake_classes: Sequence[int],
    fake_in_real: np.ndarray,
    nearest_real: np.ndarray,
    categories: Sequence[str],
    *,
    per_class: int = 8,
    title: str = "",
) -> Path:
    """Write the gallery PNG (one row pair per requested class) to `path`, atomically.

    fake: (M, H, W, 3) uint8 generated images; fake_classes: (M,) requested class ids;
    fake_in_real: (M,) bool (`manifold_membership`'s first result); nearest_real: (M, H, W, 3)
    uint8, each sample's nearest training image in the classifier's features.
    """
    import matplotlib  # deliberately lazy: an optional dependency (the `app` extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fake, nearest_real = np.asarray(fake), np.asarray(nearest_real)
    classes = np.asarray(fake_classes, dtype=np.int64)
    inside = np.asarray(fake_in_real, dtype=bool)
    if not (len(fake) == len(classes) == len(inside) == len(nearest_real)):
        raise ValueError(
            f"fake ({len(fake)}), fake_classes ({len(classes)}), fake_in_real ({len(inside)}) "
            f"and nearest_real ({len(nearest_real)}) must have the same length"
        )
    if per_class < 1:
        raise ValueError(f"per_class={per_class}: must be >= 1")
    present = np.unique(classes).tolist()
    fig, axes = plt.subplots(
        len(present), 1, figsize=(1.0 + 0.8 * per_class, 1.75 * len(present) + 0.7), squeeze=False
    )
    for ax, c in zip(axes[:, 0], present, strict=True):
        rows = np.flatnonzero(classes == c)
        chosen = rows[pick(inside[rows], per_class)]
        ax.imshow(
            class_strip(fake[chosen], nearest_real[chosen], inside[chosen], per_class),
            interpolation="nearest",
        )
        ax.set_xticks([])
        ax.set_yticks([])
        n_in = int(inside[rows].sum())
        name = categories[c].replace(" & ", " &\n") if 0 <= c < len(categories) else str(c)
        ax.set_ylabel(
            f"{name}\n{n_in / len(rows):.2f} ({n_in}/{len(rows)})",
            rotation=0,
            ha="right",
            va="center",
            fontsize=9,
        )
    head = (
        "Top: generated (green frame: inside the real manifold, counts for precision; "
        "red: outside).\nBottom: its nearest training image in the classifier's features."
    )
    fig.suptitle(f"{title}\n{head}" if title else head, fontsize=9)
    fig.tight_layout()
    # bbox_inches="tight": the right-aligned class labels sit left of the axes, outside the
    # area tight_layout reserves; the saved image grows to include them.
    out = atomic_write(
        path, lambda p: fig.savefig(p, dpi=100, format="png", bbox_inches="tight", pad_inches=0.1)
    )
    plt.close(fig)
    return out

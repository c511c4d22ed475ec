"""Emoji-32 data set: 32x32 RGB emoji with 9 category labels.

Built from the npm package ``emoji-datasource@16.0.0`` (MIT, by iamcal), which ships the
emoji metadata (``emoji.json``) and 32-px sprite sheets for several emoji sets. Only two
sets with permissive licences are used:

* Google Noto Emoji (Apache-2.0), style 0
* Twitter Twemoji (CC-BY 4.0), style 1

Each sprite sheet is a grid of 34x34 cells (a 1-px transparent border around a 32x32 emoji);
the emoji at ``(sheet_x, sheet_y)`` lives at ``(sheet_x * 34 + 1, sheet_y * 34 + 1)``. Crops
are composited on white and stored as RGB uint8. Skin-tone variations are separate images
that share the base emoji's ``emoji_id``; the held-out split is decided per base emoji (hash
of its ``unified`` code), so every style and skin tone of an emoji lands on the same side.

Typical use::

    from dimsum.data import load_emoji_dataset

    train = load_emoji_dataset("train")      # builds ~/.cache/dimsum/emoji/... on first use
    train.images, train.labels               # (N, 32, 32, 3) uint8, (N,) class ids
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import WeightedRandomSampler

from ..config import EMOJI_CATEGORIES

__all__ = [
    "CATEGORIES",
    "DROPPED_CATEGORIES",
    "EMOJI_DATASOURCE_INTEGRITY",
    "EMOJI_DATASOURCE_SPEC",
    "STYLES",
    "EmojiData",
    "EmojiDatasetError",
    "attribution_notice",
    "build_emoji_dataset",
    "class_balanced_sampler",
    "class_weights",
    "default_cache_dir",
    "fetch_emoji_datasource",
    "load_emoji_dataset",
]

EMOJI_DATASOURCE_NAME = "emoji-datasource"
EMOJI_DATASOURCE_VERSION = "16.0.0"
EMOJI_DATASOURCE_SPEC = f"{EMOJI_DATASOURCE_NAME}@{EMOJI_DATASOURCE_VERSION}"
EMOJI_DATASOURCE_TARBALL = f"{EMOJI_DATASOURCE_NAME}-{EMOJI_DATASOURCE_VERSION}.tgz"
EMOJI_DATASOURCE_URL = (
    f"https://registry.npmjs.org/{EMOJI_DATASOURCE_NAME}/-/{EMOJI_DATASOURCE_TARBALL}"
)
# `npm view emoji-datasource@16.0.0 dist.integrity` (pinned so offline rebuilds are checked).
EMOJI_DATASOURCE_INTEGRITY = "sha512-/qHKqK5Nr3+8zhgO6kHmF43Fm5C8HNn0AaFRIpgw8HF3+uF0Vfc8jgLI1ZQS5ba1vBzksS8NBCjHejwLb2D/Sg=="

# Label order is fixed: label i <-> CATEGORIES[i] (sorted names of emoji.json categories).
CATEGORIES: list[str] = list(EMOJI_CATEGORIES)  # defined once, in dimsum.config
DROPPED_CATEGORIES: tuple[str, ...] = ("Component",)  # bare skin-tone / hair swatches
# Style index <-> emoji set. Never add apple / facebook (no usable licence).
STYLES: list[str] = ["google", "twitter"]

CELL = 34  # sprite-sheet cell, 1-px border on each side
SIZE = 32  # emoji size inside a cell
HELDOUT_FRACTION = 0.1
FORMAT_VERSION = 1
DATASET_FILENAME = f"emoji32_v{EMOJI_DATASOURCE_VERSION}_f{FORMAT_VERSION}.npz"

# Files used from the npm package (paths relative to its ``package/`` folder).
_EMOJI_JSON = "emoji.json"
_SHEET = "img/{style}/sheets/32.png"


class EmojiDatasetError(RuntimeError):
    """Raised when the emoji source package cannot be obtained, verified or parsed."""


# ----------------------------------------------------------------------------------------------
# Source package: download, integrity, extraction
# ----------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$DIMSUM_CACHE/emoji`` if ``DIMSUM_CACHE`` is set, else ``~/.cache/dimsum/emoji``."""
    root = os.environ.get("DIMSUM_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "dimsum"
    return base / "emoji"


def _sha512_integrity(path: Path) -> str:
    """Subresource-integrity string (``sha512-<base64>``) of a file, as npm reports it."""
    h = hashlib.sha512()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha512-" + base64.b64encode(h.digest()).decode("ascii")


def _pick_sha512(integrity: str) -> str:
    """The ``sha512-...`` entry of an SRI string (which may list several hashes)."""
    for token in integrity.split():
        if token.startswith("sha512-"):
            return token
    raise EmojiDatasetError(f"No sha512 entry in integrity string {integrity!r}.")


def _how_to_fix(cache_dir: Path) -> str:
    return (
        "How to fix, any one of:\n"
        "  * install Node.js + npm (e.g. `apt-get install npm`) and make sure the npm registry "
        "is reachable, then retry;\n"
        f"  * download {EMOJI_DATASOURCE_URL}\n"
        f"    and save it as {cache_dir / EMOJI_DATASOURCE_TARBALL};\n"
        "  * pass `tarball=` (a local copy of the .tgz) or `package_dir=` (an unpacked "
        "package folder) to build_emoji_dataset()."
    )


def _npm_view_integrity(npm: str, timeout: float = 60.0) -> str | None:
    """Registry integrity of the pinned version, or None when the registry is unreachable."""
    try:
        out = subprocess.run(
            [npm, "view", EMOJI_DATASOURCE_SPEC, "dist.integrity"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    value = out.stdout.strip().strip("'\"")
    return value or None


def _verify_tarball(path: Path, expected: str) -> None:
    got = _sha512_integrity(path)
    if got != _pick_sha512(expected):
        raise EmojiDatasetError(
            f"Integrity check failed for {path}:\n  expected {expected}\n  got      {got}\n"
            "Delete the file and rebuild (build_emoji_dataset(force=True)) to download it again."
        )


def fetch_emoji_datasource(
    cache_dir: str | os.PathLike | None = None, *, timeout: float = 600.0
) -> Path:
    """Return the verified ``emoji-datasource-16.0.0.tgz`` in ``cache_dir``, fetching it with npm.

    A cached tarball is reused (checked against the pinned integrity). Otherwise the package is
    fetched with ``npm pack``; when the registry answers ``npm view ... dist.integrity`` that
    value must equal the pinned one, and the tarball must match it.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / EMOJI_DATASOURCE_TARBALL
    if target.is_file():
        _verify_tarball(target, EMOJI_DATASOURCE_INTEGRITY)
        return target

    npm = shutil.which("npm")
    if npm is None:
        raise EmojiDatasetError(
            f"`npm` was not found on PATH and no cached {EMOJI_DATASOURCE_TARBALL} exists in "
            f"{cache_dir}; it is needed to download {EMOJI_DATASOURCE_SPEC}.\n"
            + _how_to_fix(cache_dir)
        )

    remote = _npm_view_integrity(npm)
    if remote is not None and _pick_sha512(remote) != EMOJI_DATASOURCE_INTEGRITY:
        raise EmojiDatasetError(
            f"The registry reports integrity {remote} for {EMOJI_DATASOURCE_SPEC}, which differs "
            f"from the pinned {EMOJI_DATASOURCE_INTEGRITY}; refusing to use it."
        )

    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".npm-pack-") as tmp:
        try:
            proc = subprocess.run(
                [npm, "pack", EMOJI_DATASOURCE_SPEC, "--ignore-scripts", "--silent"],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except (OSError, subprocess.SubprocessError) as e:
            raise EmojiDatasetError(
                f"`npm pack {EMOJI_DATASOURCE_SPEC}` failed: {e}\n" + _how_to_fix(cache_dir)
            ) from e
        packed = Path(tmp) / EMOJI_DATASOURCE_TARBALL
        if proc.returncode != 0 or not packed.is_file():
            detail = (proc.stderr or proc.stdout).strip()[-2000:]
            raise EmojiDatasetError(
                f"`npm pack {EMOJI_DATASOURCE_SPEC}` failed (exit {proc.returncode}):\n{detail}\n"
                + _how_to_fix(cache_dir)
            )
        _verify_tarball(packed, EMOJI_DATASOURCE_INTEGRITY)
        os.replace(packed, target)
    return target


def _read_sources_from_tarball(path: Path) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Read only emoji.json and the google/twitter 32-px sheets from a package tarball."""
    wanted = [_EMOJI_JSON] + [_SHEET.format(style=s) for s in STYLES]
    blobs: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for name in wanted:
                try:
                    member = tar.getmember(f"package/{name}")
                except KeyError:
                    raise EmojiDatasetError(f"{path} has no package/{name}") from None
                f = tar.extractfile(member)
                if f is None:
                    raise EmojiDatasetError(f"{path}: package/{name} is not a regular file")
                blobs[name] = f.read()
    except tarfile.TarError as e:
        raise EmojiDatasetError(f"Cannot read {path}: {e}") from e
    entries = json.loads(blobs[_EMOJI_JSON].decode("utf-8"))
    sheets = {s: _load_sheet(io.BytesIO(blobs[_SHEET.format(style=s)])) for s in STYLES}
    return entries, sheets


def _read_sources_from_dir(package_dir: Path) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Same as the tarball reader, for an unpacked ``package/`` folder (or the folder above it)."""
    pkg = package_dir if (package_dir / _EMOJI_JSON).is_file() else package_dir / "package"
    if not (pkg / _EMOJI_JSON).is_file():
        raise EmojiDatasetError(f"{package_dir} has no emoji.json (nor package/emoji.json)")
    entries = json.loads((pkg / _EMOJI_JSON).read_text(encoding="utf-8"))
    sheets = {s: _load_sheet(pkg / _SHEET.format(style=s)) for s in STYLES}
    return entries, sheets


def _load_sheet(src: io.BytesIO | Path) -> np.ndarray:
    """Sprite sheet as (H, W, 4) uint8 RGBA."""
    with Image.open(src) as im:
        return np.asarray(im.convert("RGBA"))


# ----------------------------------------------------------------------------------------------
# Rasterisation and split
# ----------------------------------------------------------------------------------------------


def _crop_on_white(sheet: np.ndarray, sheet_x: int, sheet_y: int) -> np.ndarray:
    """Crop one 32x32 emoji from an RGBA sheet and composite it on white -> (32, 32, 3) uint8."""
    x0, y0 = sheet_x * CELL + 1, sheet_y * CELL + 1
    if y0 + SIZE > sheet.shape[0] or x0 + SIZE > sheet.shape[1]:
        raise EmojiDatasetError(
            f"Sheet cell ({sheet_x}, {sheet_y}) is outside a {sheet.shape} sheet"
        )
    rgba = sheet[y0 : y0 + SIZE, x0 : x0 + SIZE].astype(np.float32)
    alpha = rgba[..., 3:4] / 255.0
    rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _is_heldout(unified: str, fraction: float = HELDOUT_FRACTION) -> bool:
    """Deterministic per-emoji split: a salted SHA-256 of the base ``unified`` code."""
    digest = hashlib.sha256(f"dimsum-emoji-split:{unified.upper()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _variants(entry: dict) -> Iterator[dict]:
    """The base emoji followed by its skin-tone variations (sorted by key)."""
    yield entry
    skins = entry.get("skin_variations") or {}
    for key in sorted(skins):
        yield skins[key]


def _rasterize(entries: list[dict], sheets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    images, labels, emoji_ids, styles, splits, unified = [], [], [], [], [], []
    names, base_unified = [], []
    kept = [e for e in entries if e["category"] not in DROPPED_CATEGORIES]
    unknown = sorted({e["category"] for e in kept} - set(CATEGORIES))
    if unknown:
        raise EmojiDatasetError(f"Unknown emoji categories {unknown}; expected {CATEGORIES}")
    # Stable order independent of the json order: by the package's sort_order, then code.
    kept.sort(key=lambda e: (e.get("sort_order", 0), e["unified"]))
    for entry in kept:
        label = CATEGORIES.index(entry["category"])
        split = int(_is_heldout(entry["unified"]))
        emoji_id = len(names)
        n_before = len(images)
        for style_idx, style in enumerate(STYLES):
            for var in _variants(entry):
                if not var.get(f"has_img_{style}", False):
                    continue
                images.append(_crop_on_white(sheets[style], var["sheet_x"], var["sheet_y"]))
                labels.append(label)
                emoji_ids.append(emoji_id)
                styles.append(style_idx)
                splits.append(split)
                unified.append(var["unified"])
        if len(images) > n_before:
            names.append(entry.get("short_name") or entry.get("name") or entry["unified"])
            base_unified.append(entry["unified"])
    if not images:
        raise EmojiDatasetError("No emoji images found in the source package")
    return {
        "images": np.stack(images).astype(np.uint8),
        "labels": np.asarray(labels, dtype=np.int64),
        "emoji_id": np.asarray(emoji_ids, dtype=np.int64),
        "style": np.asarray(styles, dtype=np.int64),
        "split": np.asarray(splits, dtype=np.int64),
        "unified": np.asarray(unified, dtype=np.str_),
        "names": np.asarray(names, dtype=np.str_),
        "base_unified": np.asarray(base_unified, dtype=np.str_),
        "categories": np.asarray(CATEGORIES, dtype=np.str_),
        "styles": np.asarray(STYLES, dtype=np.str_),
        "source": np.asarray(EMOJI_DATASOURCE_SPEC),
    }


def _write_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_emoji_dataset(
    cache_dir: str | os.PathLike | None = None,
    *,
    force: bool = False,
    tarball: str | os.PathLike | None = None,
    package_dir: str | os.PathLike | None = None,
    integrity: str | None = None,
) -> Path:
    """Build (or reuse) the Emoji-32 ``.npz`` in ``cache_dir`` and return its path.

    The source is, in order of precedence: ``package_dir`` (an unpacked npm package), ``tarball``
    (a local ``.tgz``, checked against ``integrity`` when given), or the pinned
    ``emoji-datasource@16.0.0`` fetched with npm into ``cache_dir`` and checked against
    :data:`EMOJI_DATASOURCE_INTEGRITY`.

    The file holds ``images`` (N, 32, 32, 3) uint8, ``labels`` (N,) int64 indices into
    :data:`CATEGORIES`, ``emoji_id`` (N,) index of the base emoji into ``names`` (E,),
    ``style`` (N,) 0 google / 1 twitter, ``split`` (N,) 0 train / 1 held-out, ``unified`` (N,)
    code of each image's variant, plus ``base_unified`` (E,), ``categories``, ``styles``.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out = cache_dir / DATASET_FILENAME
    if out.is_file() and not force:
        return out

    if package_dir is not None:
        entries, sheets = _read_sources_from_dir(Path(package_dir))
    else:
        if tarball is not None:
            src = Path(tarball)
            if not src.is_file():
                raise EmojiDatasetError(f"tarball {src} does not exist.\n" + _how_to_fix(cache_dir))
            if integrity is not None:
                _verify_tarball(src, integrity)
        else:
            src = fetch_emoji_datasource(cache_dir)
        entries, sheets = _read_sources_from_tarball(src)

    _write_npz_atomic(out, _rasterize(entries, sheets))
    return out


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------

_SPLITS = {"train": 0, "heldout": 1}


@dataclass
class EmojiData:
    """In-memory Emoji-32 split.

    Attributes:
        images: (N, 32, 32, 3) uint8 RGB on white.
        labels: (N,) int64 category index into ``categories``.
        emoji_id: (N,) int64 base-emoji index into ``names`` (shared by styles and skin tones).
        style: (N,) int64, 0 = google, 1 = twitter.
        split: (N,) int64, 0 = train, 1 = held-out.
        unified: (N,) str, unicode code points of each image's variant.
        names: (E,) str, short name of each base emoji.
        categories: label names.
    """

    images: np.ndarray
    labels: np.ndarray
    emoji_id: np.ndarray
    style: np.ndarray
    split: np.ndarray
    unified: np.ndarray
    names: np.ndarray
    categories: list[str] = field(default_factory=lambda: list(CATEGORIES))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, mask: np.ndarray) -> EmojiData:
        """Rows selected by a boolean mask or an index array (``names`` is kept whole)."""
        return EmojiData(
            images=self.images[mask],
            labels=self.labels[mask],
            emoji_id=self.emoji_id[mask],
            style=self.style[mask],
            split=self.split[mask],
            unified=self.unified[mask],
            names=self.names,
            categories=list(self.categories),
        )

    def class_counts(self) -> dict[str, int]:
        """Number of images per category name."""
        counts = np.bincount(self.labels, minlength=len(self.categories))
        return {c: int(n) for c, n in zip(self.categories, counts, strict=True)}


def load_emoji_dataset(
    split: str = "train",
    cache_dir: str | os.PathLike | None = None,
    *,
    path: str | os.PathLike | None = None,
) -> EmojiData:
    """Load a split (``"train"``, ``"heldout"`` or ``"all"``), building the file if needed.

    ``path`` loads a specific ``.npz`` instead of the one in ``cache_dir``.
    """
    if split not in ("train", "heldout", "all"):
        raise ValueError(f"split must be 'train', 'heldout' or 'all', got {split!r}")
    file = Path(path) if path is not None else build_emoji_dataset(cache_dir)
    with np.load(file, allow_pickle=False) as z:
        data = EmojiData(
            images=z["images"],
            labels=z["labels"].astype(np.int64),
            emoji_id=z["emoji_id"].astype(np.int64),
            style=z["style"].astype(np.int64),
            split=z["split"].astype(np.int64),
            unified=z["unified"],
            names=z["names"],
            categories=[str(c) for c in z["categories"]],
        )
    if split == "all":
        return data
    return data.subset(data.split == _SPLITS[split])


# ----------------------------------------------------------------------------------------------
# Torch side
# ----------------------------------------------------------------------------------------------


def class_weights(
    labels: np.ndarray | torch.Tensor | list[int], power: float = 1.0
) -> torch.Tensor:
    """(N,) float64 sampling weight of each image: count(its class) ** -power.

    power 1: every class is drawn equally often (People & Body, ~60% of the images, gets 1/9);
    0: uniform over images (classes in their data proportions); 0.5: classes in proportion to
    the square root of their size, a compromise between the two.
    """
    if not 0.0 <= power <= 1.0:
        raise ValueError(f"balance power={power}: must be in [0, 1]")
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    counts = torch.bincount(y).to(torch.double)
    per_class = 1.0 / counts if power == 1.0 else counts.pow(-power)  # 1/count: bit-exact as before
    return per_class[y]


def class_balanced_sampler(
    labels: np.ndarray | torch.Tensor | list[int],
    num_samples: int,
    generator: torch.Generator | None = None,
    power: float = 1.0,
) -> WeightedRandomSampler:
    """Sampler drawing ``num_samples`` indices with replacement, weights from `class_weights`."""
    weights = class_weights(labels, power)
    return WeightedRandomSampler(weights, num_samples, replacement=True, generator=generator)


def attribution_notice() -> str:
    """NOTICE text for redistributing images or models trained on Emoji-32."""
    return f"""\
Emoji-32 data set (built by dimsum from {EMOJI_DATASOURCE_SPEC})

This data set contains emoji images from two projects.
Changes: rasterized 32x32, composited on white (RGB); no other edits.

* Noto Emoji, Copyright Google Inc., licensed under the Apache License 2.0
  https://github.com/googlefonts/noto-emoji
  https://www.apache.org/licenses/LICENSE-2.0

* Twemoji, Copyright Twitter, Inc and other contributors, licensed under
  the Creative Commons Attribution 4.0 International licence (CC-BY 4.0)
  https://github.com/jdecked/twemoji
  https://creativecommons.org/licenses/by/4.0/

Sprite sheets and metadata come from emoji-datasource by Cal Henderson (iamcal),
MIT License, https://github.com/iamcal/emoji-data

Apple and Facebook emoji images are not used.
"""

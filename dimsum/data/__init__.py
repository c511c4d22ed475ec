"""Data sets used by dimsum (Emoji-32)."""

from dimsum.data.emoji import (
    CATEGORIES,
    EMOJI_DATASOURCE_INTEGRITY,
    EMOJI_DATASOURCE_SPEC,
    STYLES,
    EmojiData,
    EmojiDatasetError,
    attribution_notice,
    build_emoji_dataset,
    class_balanced_sampler,
    class_weights,
    default_cache_dir,
    fetch_emoji_datasource,
    load_emoji_dataset,
)

__all__ = [
    "CATEGORIES",
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

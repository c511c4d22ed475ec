"""Look and feel: a theme that uses only system fonts (no font downloads) and a little CSS."""

from __future__ import annotations

import gradio as gr


class SystemFont(gr.themes.Font):
    """A CSS generic family such as `system-ui`, written unquoted (quoted, it would name a
    font called "system-ui" and match nothing)."""

    def __str__(self) -> str:
        return self.name


def make_theme() -> gr.themes.Base:
    return gr.themes.Soft(
        primary_hue="orange",
        secondary_hue="blue",
        neutral_hue="slate",
        font=[
            SystemFont("system-ui"),
            "-apple-system",
            "Segoe UI",
            "Roboto",
            "Helvetica Neue",
            "Arial",
            "sans-serif",
        ],
        font_mono=[SystemFont("ui-monospace"), "SFMono-Regular", "Menlo", "Consolas", "monospace"],
    )


CSS = """
/* Small images (32x32 emoji, 16x16 token maps) are enlarged by the browser: keep pixels crisp. */
.pixelated img, .pixelated canvas { image-rendering: pixelated; }
/* Evidence variants: 32x32 images at most 200 px, whole and square however few variants fill the
   row (gradio stretches a short row's cells to the full width, taller than the gallery). */
#compare-gallery img { max-width: 200px; max-height: 200px; margin: 0 auto; }
/* The live image is sent at the previews' own size (cheap to encode): fill the box. */
#live-image img, #live-image .image-container:fullscreen img { object-fit: contain; }
#header h1 { margin-bottom: 0.2rem; }
#model-info { font-size: 0.92rem; }
.help { font-size: 0.93rem; color: var(--body-text-color-subdued); }
.help p { margin: 0.25rem 0; }
#generate-btn { min-height: 48px; font-size: 1.05rem; }
.view-caption { font-size: 0.92rem; }
.diagram svg { background: white; border-radius: 12px; }
footer { opacity: 0.8; }
"""

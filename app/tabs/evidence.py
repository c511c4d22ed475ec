"""Evidence tab: the ablation's training curves and, when variants are installed, a comparison."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .. import text
from ..explorer import Explorer
from ..results import VariantComparison
from ..views import evidence as view


@dataclass(frozen=True)
class ComparePanel:
    button: gr.Button
    outputs: VariantComparison  # of components


@dataclass(frozen=True)
class EvidenceTab:
    compare: ComparePanel | None  # None when no ablation variant is installed


def build(explorer: Explorer) -> EvidenceTab:
    with gr.Tab("Evidence", id="evidence"):
        gr.Markdown(text.EVIDENCE_HELP, elem_classes="help")
        _curves(explorer)
        variants = [k for k in explorer.registry.sources if k.startswith("ablation:")]
        compare = _compare_panel(len(variants)) if variants else None
        if explorer.curves is None and not variants:
            gr.Markdown(text.EVIDENCE_MISSING, elem_id="evidence-missing")
    return EvidenceTab(compare)


def _curves(explorer: Explorer) -> None:
    if explorer.curves is not None:
        gr.Plot(
            view.curves_figure(explorer.curves),
            show_label=False,
            label="Training and evaluation curves",
        )
        gr.Markdown(view.curves_markdown(explorer.curves))
    elif explorer.curves_error:
        gr.Markdown(f"⚠️ Ablation curves unavailable: {explorer.curves_error}")


def _compare_panel(num_variants: int) -> ComparePanel:
    gr.Markdown(
        f"**Same seed and class with each variant** ({num_variants} variants; uses the class, "
        "seed, steps, sampler, step schedule and guidance set above)."
    )
    button = gr.Button("Generate with every variant")
    gallery = gr.Gallery(
        label="Variants",
        format="png",
        # square cells as tall as they are wide ("auto": the box grows to fit them), at most
        # ~200 px each, so every image shows whole with its caption (the variant) under it
        columns=max(num_variants, 6),
        height="auto",
        object_fit="contain",
        allow_preview=True,
        elem_classes="pixelated",
        elem_id="compare-gallery",
    )
    table = gr.Markdown(elem_id="compare-table")
    plot = gr.Plot(show_label=False, label="Subband energy per variant")
    return ComparePanel(button, VariantComparison(gallery, plot, table))

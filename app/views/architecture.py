"""The architecture diagram (inline SVG, drawn from the model's config) with links to the views."""

from __future__ import annotations

import html

from dimsum.config import DiMSUMConfig

_STYLE = """<style>
.dg text{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;fill:#212529}
.dg .t{font-size:13px;font-weight:600}.dg .s{font-size:11px;fill:#495057}
.dg .v{font-size:11px;font-style:italic;fill:#1864ab}
.dg .b{stroke:#495057;stroke-width:1.2;rx:9}
.dg .a{stroke:#495057;stroke-width:1.4;fill:none;marker-end:url(#arr)}
</style>"""


def _box(
    x: float, y: float, w: float, h: float, fill: str, title: str, sub: str = "", view: str = ""
) -> str:
    parts = [f'<rect class="b" x="{x}" y="{y}" width="{w}" height="{h}" fill="{fill}"/>']
    ty = y + (h / 2 + 4 if not sub else h / 2 - 3)
    parts.append(
        f'<text class="t" x="{x + w / 2}" y="{ty}" text-anchor="middle">{html.escape(title)}</text>'
    )
    if sub:
        parts.append(
            f'<text class="s" x="{x + w / 2}" y="{ty + 15}" text-anchor="middle">{html.escape(sub)}</text>'
        )
    if view:
        parts.append(
            f'<text class="v" x="{x + w + 6}" y="{y + h / 2 + 4}">→ {html.escape(view)} tab</text>'
        )
    return "".join(parts)


def _arrow(x1: float, y1: float, x2: float, y2: float) -> str:
    return f'<path class="a" d="M{x1},{y1} L{x2},{y2}"/>'


def diagram_svg(config: DiMSUMConfig) -> str:
    """Left: the whole network and the sampling loop. Right: inside one block."""
    side, d, half = config.grid_size, config.hidden_size, config.branch_width
    depth, every = config.depth, config.attn_every
    space = "RGB" if config.space == "pixel" else "SD-VAE latent"
    s = [
        '<svg class="dg" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 980 560" width="100%" '
        'style="max-width:980px" role="img" aria-label="DiMSUM architecture diagram">',
        _STYLE,
        '<defs><marker id="arr" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#495057"/></marker></defs>',
        '<text class="t" x="20" y="22">The network</text>',
        _box(
            20,
            36,
            230,
            46,
            "#f1f3f5",
            f"x_t ({config.input_size}×{config.input_size} {space})",
            "+ time t + class",
        ),
        _arrow(135, 82, 135, 100),
        _box(
            20,
            100,
            230,
            46,
            "#e7f5ff",
            "Patch embed (2×2) + position",
            f"{side}×{side} = {side * side} tokens × {d}",
        ),
        _arrow(135, 146, 135, 164),
        _box(
            20,
            164,
            230,
            62,
            "#fff4e6",
            f"{depth} DiMSUM blocks",
            f"shared attention after every {every}th" if every else "no attention block",
        ),
        _arrow(135, 226, 135, 244),
        _box(20, 244, 230, 46, "#f3f0ff", "Final layer", "velocity v(x_t, t, class)"),
        _arrow(135, 290, 135, 308),
        _box(20, 308, 230, 58, "#ebfbee", "ODE sampler step", "x_t → x_t+Δt, and x̂₁", "Trajectory"),
        '<path class="a" d="M20,337 C4,337 4,59 18,59"/>',
        '<text class="s" x="24" y="392">repeat until t = 1, then decode the image</text>',
        # --- inside one block (right) ---
        '<rect x="330" y="8" width="640" height="544" rx="14" fill="none" stroke="#fd7e14" stroke-dasharray="6 4"/>',
        '<text class="t" x="346" y="30">Inside one block</text>',
        '<path d="M250,195 L330,60" stroke="#fd7e14" stroke-dasharray="6 4" fill="none"/>',
        _box(520, 40, 200, 40, "#f1f3f5", "RMSNorm", f"tokens × {d}"),
        _arrow(620, 80, 620, 96),
        _box(470, 96, 300, 34, "#f8f9fa", f"split channels: {half} | {half}"),
        _arrow(540, 130, 450, 156),
        _arrow(700, 130, 760, 156),
        _box(
            350, 156, 200, 62, "#dbe4ff", "Spatial Mamba", "tokens in this layer's scan order", ""
        ),
        '<text class="v" x="352" y="236">→ Scan orders tab</text>',
        _box(
            660,
            156,
            200,
            46,
            "#fff3bf",
            "Haar packet, 2 levels",
            f"16 subbands of {side // 4}×{side // 4}",
        ),
        '<text class="v" x="866" y="183">→ Wavelets tab</text>',
        _arrow(760, 202, 760, 216),
        _box(660, 216, 200, 46, "#fff3bf", "Frequency Mamba", "window scan over wavelet tokens"),
        '<text class="v" x="866" y="243">→ Scan orders tab</text>',
        _arrow(760, 262, 760, 276),
        _box(660, 276, 200, 36, "#fff3bf", "inverse Haar (exact)"),
        _arrow(450, 218, 520, 340),
        _arrow(760, 312, 720, 340),
        _box(
            470, 340, 300, 50, "#d3f9d8", "Cross-attention fusion", "each branch queries the other"
        ),
        '<text class="v" x="776" y="358">→ Branches tab</text>',
        '<text class="s" x="776" y="374">(both branch outputs,</text>',
        '<text class="s" x="776" y="388">fusion, block output)</text>',
        _arrow(620, 390, 620, 408),
        _box(470, 408, 300, 36, "#f8f9fa", "+ normalised input (residual)"),
        _arrow(620, 444, 620, 462),
        _box(470, 462, 300, 50, "#f3f0ff", "Gated MLP", "scaled / gated by time + class (adaLN)"),
        _arrow(620, 512, 620, 536),
        '<text class="s" x="630" y="534">to the next block</text>',
        "</svg>",
    ]
    return "".join(s)

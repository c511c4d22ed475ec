"""The fidelity / variety trade-off of the initial-noise temperature, as a picture.

Sampling from x_0 ~ N(0, T^2 I) with T < 1 keeps samples nearer the typical images of their class
(precision up) at the cost of variety (recall down); FD weighs both (for the embedded model it
grows steadily as T falls below 1). `dimsum eval --temperature T1 T2 ... --plot out.png` draws the measured
curves (`dimsum.evaluate.temperature_sweep`), with the held-out-real reference as dashed lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..io import atomic_write


def tradeoff_plot(
    path: str | Path,
    runs: Sequence[Mapping[str, Any]],
    reference: Mapping[str, float],
    *,
    chosen: float | None = None,
    title: str = "",
) -> Path:
    """Two panels against temperature: precision and recall (left), FD-emoji (right).

    runs: `Evaluator` reports (each with ``settings["temperature"]``, ``precision``, ``recall``,
        ``fd_emoji``); plotted in temperature order.
    reference: held-out real vs training real (``precision``, ``recall``, ``fd_emoji``).
    chosen: a temperature to mark (the model's recommended one). Written atomically.
    """
    import matplotlib  # deliberately lazy: an optional dependency (the `app` extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(runs) < 2:
        raise ValueError(f"a trade-off plot needs two or more temperatures, got {len(runs)}")
    runs = sorted(runs, key=lambda r: r["settings"]["temperature"])
    temps = [r["settings"]["temperature"] for r in runs]
    fig, (ax_pr, ax_fd) = plt.subplots(1, 2, figsize=(9, 3.6), constrained_layout=True)
    for key, colour in (("precision", "tab:blue"), ("recall", "tab:orange")):
        ax_pr.plot(temps, [r[key] for r in runs], "o-", color=colour, label=key)
        ax_pr.axhline(reference[key], color=colour, ls="--", lw=1, label=f"{key}, held-out real")
    ax_pr.set_ylabel("k-NN precision / recall (k = 3)")
    ax_pr.legend(fontsize=8, loc="best")
    ax_fd.plot(temps, [r["fd_emoji"] for r in runs], "o-", color="tab:green", label="generated")
    ax_fd.axhline(reference["fd_emoji"], color="tab:green", ls="--", lw=1, label="held-out real")
    ax_fd.set_ylabel("FD-emoji (lower is better)")
    ax_fd.legend(fontsize=8, loc="best")
    for ax in (ax_pr, ax_fd):
        ax.set_xlabel("initial-noise temperature T  (x0 ~ N(0, T² I))")
        ax.grid(alpha=0.3)
        if chosen is not None:
            ax.axvline(chosen, color="0.4", lw=1, ls=":")
            ax.annotate(
                f"model's T = {chosen:g}",
                (chosen, 1.0),
                xycoords=("data", "axes fraction"),
                fontsize=8,
                ha="center",
                va="bottom",
            )
    if title:
        fig.suptitle(title, fontsize=10)
    out = atomic_write(path, lambda p: fig.savefig(p, dpi=100, format="png"))
    plt.close(fig)
    return out

"""What each handler in explorer.py returns: small named results instead of positional lists.

The UI builds the same types with a component in each field (app/tabs), and
`app.tabs.outputs` pairs value and component by field name. Field order is the output order
of the HTTP API (the `api_name` endpoints, see app/README.md): do not reorder fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ScanPanels:
    """The scan-orders tab for one layer."""

    strip: Any  # HTML strip of the layer cycle
    image: Any  # PNG path of the scan paths (None for an attention layer)
    text: Any


@dataclass(frozen=True)
class ModelOutputs:
    """Everything that depends on the session's model."""

    model: Any
    class_label: Any
    info: Any
    scan_layer: Any
    scan: ScanPanels
    diagram: Any
    temperature: Any


@dataclass(frozen=True)
class ControlValues:
    """Sampling controls set by a link or loaded settings (gr.skip() = left as they are)."""

    seed: Any
    steps: Any
    sampler: Any
    guidance: Any
    images: Any
    schedule: Any


@dataclass(frozen=True)
class ModelChange:
    session: Any
    model: ModelOutputs
    guidance: Any  # the guidance slider: off for an unconditional model (last: API order)


@dataclass(frozen=True)
class SettingsChange:
    """Settings (a link, JSON, a PNG) applied: the model's outputs and the controls (whose
    guidance also follows the model, as ModelChange.guidance does)."""

    session: Any
    model: ModelOutputs
    controls: ControlValues


@dataclass(frozen=True)
class GenerateOutputs:
    live: Any
    gallery: Any
    files: Any
    status: Any
    settings_json: Any
    share_query: Any
    session: Any


@dataclass(frozen=True)
class TrajectoryFrame:
    image: Any
    caption: Any


@dataclass(frozen=True)
class WaveletPanels:
    level1: Any
    level2: Any
    plot: Any
    caption: Any


@dataclass(frozen=True)
class BranchPanels:
    images: list[Any]  # one per branches.BRANCH_OUTPUTS
    plot: Any
    caption: Any


@dataclass(frozen=True)
class TrajectoryReset:
    step: Any
    frame: TrajectoryFrame
    plot: Any
    export_file: Any


@dataclass(frozen=True)
class WaveletsReset:
    step: Any
    block: Any
    image: Any
    source: Any
    panels: WaveletPanels


@dataclass(frozen=True)
class BranchesReset:
    step: Any
    block: Any
    image: Any
    panels: BranchPanels
    show: Any  # the "Colour each token by" control, back to the norm maps


@dataclass(frozen=True)
class VariantComparison:
    gallery: Any
    plot: Any
    table: Any


@dataclass(frozen=True)
class ViewsReset:
    """Every view's controls set to a new run, with its default drawing."""

    trajectory: TrajectoryReset
    wavelets: WaveletsReset
    branches: BranchesReset


@dataclass(frozen=True)
class LinkedReset:
    """The linked views and the scan animation set to the session's run (or model)."""

    step: Any
    block: Any
    image: Any
    view: Any  # JSON for the linked view (app/views/linked.py)
    scan_step: Any
    scan_image: Any
    animation: Any  # JSON for the scan animation (app/views/scans.py animation_payload)


@dataclass(frozen=True)
class InterventionControls:
    """The intervention controls set to a run's model (after each run) or to a preset."""

    kind: Any
    replacement: Any
    blocks: Any
    t_start: Any
    t_end: Any


@dataclass(frozen=True)
class InterventionResult:
    """The session's last run beside the same run with one part of the network changed."""

    original: Any  # gallery: the run's images
    changed: Any  # gallery: the same seeds with the intervention
    difference: Any  # gallery: difference_rgb on one scale
    legend: Any  # HTML colour bar of the difference scale
    plot: Any  # per-subband energy, original vs changed
    summary: Any  # markdown: the intervention, group changes in %, time
    details: Any  # JSON: the intervention, SubbandEnergy.to_dict(), scale, seconds


@dataclass(frozen=True)
class InterventionRefresh:
    """After a run: the blocks of the run's model, and the new originals with no comparison."""

    blocks: Any
    result: InterventionResult

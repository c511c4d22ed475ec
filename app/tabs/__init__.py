"""The page's layout, one builder per area; app/ui.py calls them and wires the events.

Each module's `build(...)` lays out its components and returns them by name in a frozen
dataclass. Components that a handler updates are grouped in the handler's own result type
(app/results.py), so `outputs.named` can pair results with components by field name.

    generate      controls (model, class, seed, sampler...), share/load settings, results
    trajectory    Trajectory tab        wavelets      Wavelets tab
    scans         Scan orders tab       branches      Branches tab
    architecture  Architecture tab      evidence      Evidence tab
    outputs       pairs a handler's named result with its components
"""

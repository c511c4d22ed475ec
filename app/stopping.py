"""What Stop leaves on the page: the previous finished run, images and tabs alike.

A stopped run is discarded (the session only moves to a run once it completes), so the tabs
keep showing the previous run. The streamed previews had cleared the final images; Stop puts the
previous run's images, files, live frame and settings back, so images and tabs always show the
same run, and says at which step sampling stopped (the same numbering as the progress bar).
"""

from __future__ import annotations

import re
from typing import Any

from . import text
from .results import GenerateOutputs
from .state import RunExpired, SessionState
from .views import trajectory

_STEP = re.compile(r"step (\d+) of (\d+)")


def where_stopped(status: Any) -> str:
    """'step k of N' read from the live status line ('Sampling… step k of N, t = …')."""
    m = _STEP.search(status if isinstance(status, str) else "")
    return f"step {m.group(1)} of {m.group(2)}" if m else "the start"


def stopped(explorer: Any, session: Any, status: Any) -> GenerateOutputs:
    """Stop's result: the previous run's images (or none at all, like the tabs) and a status."""
    where = where_stopped(status)
    try:
        rec = explorer.run_for(session if isinstance(session, SessionState) else None)
    except RunExpired:
        return GenerateOutputs(
            live=None,
            gallery=None,
            files=None,
            status=text.STOPPED_NOTHING.format(where=where),
            settings_json=None,
            share_query=None,
            session=session,
        )
    last = rec.num_steps - 1
    seeds = rec.settings.get("seeds", [])
    settings_json, share_query = rec.share or (None, None)
    return GenerateOutputs(
        live=trajectory.live_frame(rec.previews_xt[last], rec.previews_x1[last]),
        gallery=[(p, f"seed {s}") for p, s in zip(rec.png_paths, seeds, strict=False)],
        files=list(rec.png_paths),
        status=text.STOPPED_PREVIOUS.format(where=where),
        settings_json=settings_json,
        share_query=share_query,
        session=session,
    )

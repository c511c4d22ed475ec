"""A stand-in for Hugging Face's `spaces` package on ZeroGPU: records what the app does with it.

`GPU` records every decorated function and its `duration`; `IMPORTED_AFTER_TORCH` says whether
torch was already imported when the app imported `spaces` (ZeroGPU needs `spaces` first).
"""

import sys

IMPORTED_AFTER_TORCH = "torch" in sys.modules
DECORATED: list[dict] = []


class config:  # noqa: N801 - mirrors spaces.config.Config
    class Config:
        zero_gpu = True


def GPU(fn=None, *, duration=60):  # noqa: N802 - the real decorator's name
    def wrap(f):
        DECORATED.append({"name": f.__name__, "duration": duration, "fn": f})
        return f

    return wrap(fn) if fn is not None else wrap

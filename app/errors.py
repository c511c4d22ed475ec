"""Every error a user sees is one clean sentence (gr.Error), never a traceback; the app stays up.

`clean_errors` wraps each event handler (plain functions and generators): known user-facing
errors keep their message; anything unexpected is logged with its traceback on the server and
shown as a short message with a reference id to find it in the log.
"""

from __future__ import annotations

import functools
import inspect
import logging
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from dimsum.checkpoints import CheckpointError
from dimsum.flow import NonFiniteError
from dimsum.vae import VAEUnavailableError
from dimsum.validation import InputError

from .models import ModelUnavailable
from .state import RunExpired, ViewError

log = logging.getLogger("dimsum.app")
F = TypeVar("F", bound=Callable[..., Any])

USER_ERRORS = (
    InputError,
    CheckpointError,
    VAEUnavailableError,
    ModelUnavailable,
    RunExpired,
    ViewError,
)
MAX_MESSAGE = 600


def user_message(err: BaseException) -> str:
    """The message to show for an exception (no traceback, bounded length)."""
    if isinstance(err, RunExpired):
        text = str(err.args[0]) if err.args else "no run yet: press Generate first"
    elif isinstance(err, USER_ERRORS):
        text = str(err)
    elif isinstance(err, NonFiniteError):
        text = (
            f"sampling diverged (non-finite values at step {err.step}, t = {err.t:.3f}); "
            "try a smaller guidance scale or more steps"
        )
    elif isinstance(err, MemoryError):
        text = "the server ran out of memory for this request; try fewer images or steps"
    else:
        ref = secrets.token_hex(4)
        log.error("unexpected error (ref %s)", ref, exc_info=err)
        text = f"something went wrong on the server (reference {ref}); the app is still running — try again or change the settings"
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def to_gr_error(err: BaseException) -> gr.Error:
    if isinstance(err, gr.Error):
        return err
    return gr.Error(user_message(err), print_exception=False)


def clean_errors(fn: F) -> F:
    """Wrap an event handler so that every exception becomes a clean gr.Error."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as err:  # noqa: BLE001 - the point of this wrapper
                raise to_gr_error(err) from None

        return gen_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as err:  # noqa: BLE001 - the point of this wrapper
            raise to_gr_error(err) from None

    return wrapper  # type: ignore[return-value]

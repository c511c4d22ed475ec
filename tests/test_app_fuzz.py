"""Property test: hostile and random inputs to /generate never crash the server and every
failure is a clean one-line message (no traceback, not gradio's generic error).

Valid inputs are drawn small (at most 3 steps, 2 images) so the 300+ requests stay fast;
invalid ones must fail in validation, before any model work.
"""

from __future__ import annotations

import math

import pytest

pytest.importorskip("hypothesis")
pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from dimsum.config import EMOJI_CATEGORIES  # noqa: E402
from dimsum.io import read_png_settings  # noqa: E402

HUGE = 2**70
junk_text = st.text(max_size=40) | st.sampled_from(
    [
        "",
        " ",
        "nan",
        "inf",
        "-inf",
        "1e400",
        "0x10",
        "Traceback",
        "../../etc/passwd",
        "<script>",
        "7" * 5000,
    ]
)
junk = (
    st.none()
    | st.booleans()
    | st.lists(st.integers(-3, 3), max_size=3)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)

CLASSES = (
    st.sampled_from(EMOJI_CATEGORIES)
    | st.integers(-HUGE, HUGE)
    | st.integers(-2, 10)
    | junk_text
    | junk
    | finite
)
SEEDS = (
    st.integers(0, 1000).map(str)
    | st.integers(-HUGE, HUGE)
    | st.integers(-HUGE, HUGE).map(str)
    | junk_text
    | junk
    | finite
)
# Random numbers stay out of the valid step / image ranges (valid requests come from VALID_ARGS,
# kept small), so the 300+ requests stay fast; floats and strings may still land inside.
STEPS = (
    st.integers(-3, 0) | st.integers(251, HUGE) | st.integers(-HUGE, -1) | finite | junk_text | junk
)
SAMPLERS = st.sampled_from(["heun", "euler", "Euler", "dopri5"]) | junk_text | junk | st.integers()
GUIDANCE = st.floats(-5, 25, allow_nan=False) | st.integers(-HUGE, HUGE) | junk_text | junk
IMAGES = (
    st.integers(-3, 0) | st.integers(17, HUGE) | st.integers(-HUGE, 0) | finite | junk_text | junk
)

SCHEDULES = st.sampled_from(["uniform", "karras", "Karras"]) | junk_text | junk | st.integers()

TEMPERATURES = st.floats(-1, 3, allow_nan=False) | st.integers(-HUGE, HUGE) | junk_text | junk

RANDOM_ARGS = st.tuples(CLASSES, SEEDS, STEPS, SAMPLERS, GUIDANCE, IMAGES, SCHEDULES, TEMPERATURES)
# Well-formed requests, so the success path is exercised too.
VALID_ARGS = st.tuples(
    st.sampled_from(EMOJI_CATEGORIES) | st.integers(0, 8),
    st.integers(0, 2**40).map(str) | st.integers(0, 2**40),
    st.integers(1, 2),
    st.sampled_from(["heun", "euler", "Euler"]),
    st.floats(0, 20, allow_nan=False) | st.integers(0, 20),
    st.integers(1, 2),
    st.sampled_from(["uniform", "karras", "Karras"]),
    st.floats(0, 2, allow_nan=False) | st.just(1),
)


def new_counter() -> dict[str, int]:
    return {"requests": 0, "ok": 0, "rejected": 0}


# gradio's queue uses pandas APIs that warn on every event; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")


@pytest.fixture(scope="module")
def client() -> Client:
    from app.testing import shared_server

    # Files stay on the server (same machine): no download per request, reads go to the path.
    return Client(shared_server().url, verbose=False, download_files=False)


def _clean(msg: str) -> bool:
    return (
        bool(msg.strip())
        and 'File "' not in msg
        and "Traceback (most recent call last)" not in msg
        and "verbose error reporting" not in msg
        and len(msg) <= 1200
    )


def _send(client: Client, args: tuple, counter: dict[str, int]) -> None:
    counter["requests"] += 1
    try:
        out = client.predict(*args, api_name="/generate")
    except AppError as err:
        counter["rejected"] += 1
        assert _clean(str(err)), f"unclean error for {args!r}: {err}"
        return
    counter["ok"] += 1
    gallery, files, settings_text = out[1], out[2], out[4]
    assert len(gallery) == len(files) >= 1
    meta = read_png_settings(files[0]["path"])
    assert 1 <= meta["steps"] <= 3 and len(meta["seeds"]) == len(files) <= 2
    assert isinstance(settings_text, str) and settings_text.startswith("{")


def test_generate_fuzz(client: Client) -> None:
    """300 random requests: each fails cleanly or succeeds; enough of both kinds were sent (the
    counts are this test's own, so it proves the same run alone or in any order)."""
    counter = new_counter()

    @settings(
        max_examples=300,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(branch=st.integers(0, 9), valid=VALID_ARGS, random_args=RANDOM_ARGS)
    def one_request(branch: int, valid: tuple, random_args: tuple) -> None:
        # One example in ten is well-formed; 7 rather than 0 because Hypothesis favours the
        # ends of a range, which would make the (slower) valid branch the common one.
        args = valid if branch == 7 else random_args
        assert not any(
            isinstance(v, float) and not math.isfinite(v) for v in args
        )  # no NaN in JSON
        _send(client, args, counter)

    one_request()
    print("fuzz requests:", counter)
    assert counter["requests"] >= 300, counter
    assert counter["ok"] >= 5 and counter["rejected"] >= 150, counter


HOSTILE = [
    ("Smileys & Emotion", "0", "nan", "heun", 4.0, 1),
    ("Smileys & Emotion", "0", 2, "heun", "inf", 1),
    ("Smileys & Emotion", "0", 2, "heun", 4.0, "-inf"),
    ("Smileys & Emotion", "0", 250, "heun", 20.0, 16),  # valid individually, too much work together
    ("Smileys & Emotion", str(2**63 - 1), 2, "heun", 4.0, 2),  # last seed would overflow
    ("Smileys & Emotion", "0", 0, "dopri5", 4.0, 1),  # dopri5 needs >= 1 step (2 output points)
    ("Smileys & Emotion", "0", True, "heun", 4.0, 1),
    ("Smileys & Emotion", "0", 2, "heun", 4.0, False),
    (None, None, None, None, None, None),
    ([], {}, [], {}, [], {}),
    ("x" * 100_000, "1" * 100_000, 2, "heun", 4.0, 1),
]


def test_hostile_inputs_and_server_stays_up(client: Client) -> None:
    counter = new_counter()
    for args in HOSTILE:
        before = counter["rejected"]
        _send(client, args, counter)
        assert counter["rejected"] == before + 1, f"expected a rejection for {str(args)[:120]}"
    # Still serving, and still generating.
    assert client.predict(api_name="/random_seed").isdigit()
    _send(client, ("Flags", "3", 1, "euler", 1.0, 1), counter)
    assert counter == {"requests": len(HOSTILE) + 1, "ok": 1, "rejected": len(HOSTILE)}, counter

"""Every regular expression that runs over what users and documents send runs in linear time.

The patterns are found where they live: each module-level compiled pattern in bot/, actions/,
channels/ and rasa_sdk_plugins/ (a module is imported when its source compiles one), and the
redaction patterns bot.yml starts with (``DEFAULT_REDACTIONS``). A pattern added there is
tested without being listed here. Each meets hostile input built from runs of letters,
digits, dots, "@", spaces, "-", CJK and line breaks, and from its own characters and words
(alone, repeated, paired, or opening a long run): all of them at 4 KB, the three slowest at
64 KB, 250 KB and 1 MB. The CPU time at 1 MB is bounded (2 s, for a slow CI machine) and so is
its growth from 250 KB (under 8x: a quadratic pattern grows 16x), which fails a quadratic
pattern on a fast machine too.
"""

from __future__ import annotations

import importlib
import re
import time
from pathlib import Path
from typing import Callable

import pytest

from bot.config import DEFAULT_REDACTIONS
from bot.traces.redact import OVERLAP, WINDOW, Redactor

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "actions", "channels", "rasa_sdk_plugins")
#: Patterns that only ever see the operator's own files, never a user's or a document's text.
TRUSTED = {
    "bot.config._ENV_PATTERN": "${VAR} in bot.yml and endpoints.yml",
    "bot.traces.timespec._AGE": "the --since / --until option of `bot traces`",
    "bot.traces.timespec._DATE": "the --since / --until option of `bot traces`",
    "bot.llm.prompts._EXAMPLE": "the names of prompt templates",
}
RUNS = ("a", "1", ".", "@", " ", "-", "中", "\n", "\r")
SCREEN, QUARTER, FULL = 4_000, 250_000, 1_000_000
_WORD = re.compile(r"[^\W_]{2,}")
MAX_SECONDS, MAX_GROWTH = 2.0, 8.0
#: The quickest a scan of 250 KB is counted as taking: below it timer noise is all there is.
FLOOR = 0.01


def _module_patterns() -> dict[str, re.Pattern[str]]:
    patterns = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if "re.compile" not in path.read_text("utf-8"):
                continue
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            module = importlib.import_module(name)
            for attribute, value in vars(module).items():
                if isinstance(value, re.Pattern) and isinstance(value.pattern, str):
                    patterns.setdefault(f"{name}.{attribute}", value)
    return patterns


def _patterns() -> dict[str, re.Pattern[str]]:
    patterns = {f"DEFAULT_REDACTIONS.{label}": re.compile(p) for label, p in DEFAULT_REDACTIONS.items()}
    patterns.update({name: p for name, p in _module_patterns().items() if name not in TRUSTED})
    return patterns


PATTERNS = _patterns()


def hostile_inputs(pattern: re.Pattern[str]) -> dict[str, Callable[[int], str]]:
    """Makers of inputs of a given size, by a name that says how each is made: runs of
    ``RUNS`` and of the pattern's own characters and words ("NN", "question"), repeated alone,
    paired with a letter, a digit or a space, or opening a long run of one."""
    pieces = sorted(set(RUNS) | set(pattern.pattern) - {"\\"}) + sorted(set(_WORD.findall(pattern.pattern)))
    inputs = {}
    for piece in pieces:
        inputs[f"{piece!r} repeated, then x"] = lambda size, p=piece: _fill(p, size - 1) + "x"
        for other in ("a", "1", " "):
            inputs[f"({piece!r} {other!r}) repeated"] = lambda size, p=piece, o=other: _fill(p + o, size)
            inputs[f"{piece!r}, then a {other!r} run, then x"] = (
                lambda size, p=piece, o=other: p + o * (size - len(p) - 1) + "x"
            )
    return inputs


def _fill(piece: str, size: int) -> str:
    return (piece * (size // len(piece) + 1))[:size]


def scan_seconds(pattern: re.Pattern[str], text: str, repeats: int = 1) -> float:
    """The least CPU time of ``repeats`` scans for every match (as ``sub``, ``split`` and
    ``findall`` make); other processes on the machine do not count."""
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time()
        for _match in pattern.finditer(text):
            pass
        best = min(best, time.thread_time() - start)
    return best


def slowest_inputs(pattern: re.Pattern[str], count: int = 3) -> list[tuple[str, Callable[[int], str]]]:
    """The ``count`` inputs the pattern is slowest on at 4 KB, by name."""
    makers = hostile_inputs(pattern)
    timings = {name: scan_seconds(pattern, make(SCREEN)) for name, make in makers.items()}
    return [(name, makers[name]) for name in sorted(timings, key=timings.get, reverse=True)[:count]]


def test_the_patterns_are_found_where_they_live():
    assert {"DEFAULT_REDACTIONS.email", "bot.citations._MARKER", "bot.ingest.chunking._SENTENCE_END"} <= set(PATTERNS)
    assert {"actions.forms._ORDER_NUMBER", "actions.slack_sink._BOLD", "bot.enhance._LEADER"} <= set(PATTERNS)
    assert not set(TRUSTED) - set(_module_patterns()), "a TRUSTED entry names a pattern that is gone"


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_pattern_runs_in_linear_time(name):
    pattern = PATTERNS[name]
    for case, make in slowest_inputs(pattern):
        early = scan_seconds(pattern, make(16 * SCREEN))
        assert early < MAX_SECONDS / 4, f"{name} took {early:.2f} s on 64 KB of {case}: not linear"
        quarter = scan_seconds(pattern, make(QUARTER), repeats=3)
        full = scan_seconds(pattern, make(FULL), repeats=2)
        assert full < MAX_SECONDS, f"{name} took {full:.2f} s on 1 MB of {case}"
        growth = full / max(quarter, FLOOR)
        assert growth < MAX_GROWTH, f"{name}: 1 MB of {case} took {growth:.1f}x the time of 250 KB"


# The probe itself: it must tell the quadratic patterns these replaced from linear ones.
QUADRATIC = {
    "e-mail": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    "line break": r"\s*\n\s*",
    "trailing marks": r"[\s?？.。!！]+$",
    "order number": r"(?<![A-Za-z0-9])NN\s*[-－—]?\s*(\d{8})(?!\d)",
}


@pytest.mark.parametrize("label", sorted(QUADRATIC))
def test_the_probe_catches_a_quadratic_pattern(label):
    pattern = re.compile(QUADRATIC[label])
    [(worst, make)] = slowest_inputs(pattern, count=1)
    small = scan_seconds(pattern, make(SCREEN))
    large = scan_seconds(pattern, make(4 * SCREEN))
    assert large / small > MAX_GROWTH, f"{label}: {small:.3f} s -> {large:.3f} s on {worst}"


# A user's own pattern (bot.yml traces.redact) cannot be mended: the redactor runs it on windows.


def test_a_users_backtracking_pattern_costs_time_in_proportion_to_the_text():
    redactor = Redactor({"email": QUADRATIC["e-mail"]})
    timings = []
    for size in (QUARTER // 2, 2 * QUARTER):
        start = time.thread_time()
        redactor.text("a" * size)
        timings.append(time.thread_time() - start)
    assert timings[1] / timings[0] < MAX_GROWTH, timings


def test_a_users_pattern_masks_across_window_edges_as_on_the_whole_text():
    patterns = {"email": r"[\w.+-]+@[\w-]+\.[A-Za-z]{2,}", "order": r"NN-\d{8}"}
    redactor = Redactor(patterns)
    filler = "x " * (WINDOW // 2)
    text = "".join(
        f"{filler[: WINDOW - offset]}ann.lee{offset}@example.com and NN-2024051{offset % 10} "
        for offset in range(0, OVERLAP, 7)
    )
    assert len(text) > 10 * (WINDOW + OVERLAP)
    whole = text
    for label, pattern in patterns.items():
        whole = re.sub(pattern, f"[{label}]", whole)
    assert "@" not in whole and "NN-" not in whole
    assert redactor.text(text) == whole


def test_the_shipped_redactions_mask_as_before_on_ordinary_text():
    redactor = Redactor(DEFAULT_REDACTIONS)
    assert redactor.text("write to ann.lee+bot@mail.example.co.uk, then call 138 1234 5678.") == (
        "write to [email], then call [phone]."
    )
    # Addresses glued together are one mask, not an address left after the first.
    assert redactor.text("a@b.com1x@c.org; a@b.com.x@c.org") == "[email]; [email]"
    assert redactor.text("(ann@example.com)") == "([email])"

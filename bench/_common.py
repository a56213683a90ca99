"""Helpers shared by the benchmarks: load average, percentiles, tables, query texts.

Nothing here writes to disk. Evaluation sets are read at run time from
``--eval-dir`` (default ``../shared/eval`` beside the project) and never copied.
"""

from __future__ import annotations

import json
import os
import platform
import random
import signal
import sys
import time
from pathlib import Path
from typing import Iterable, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_EVAL_DIR = REPO.parent / "shared" / "eval"

#: Used when no evaluation sets are found: questions about the demo knowledge base.
FALLBACK_QUESTIONS_ZH = (
    "云序笔记有哪些套餐？", "免费版有哪些限制？", "进阶版比免费版多了哪些功能？", "团队版最少要买几个人？",
    "年付可以退款吗？", "退款多久到账？", "怎么开启两步验证？", "忘记密码怎么办？",
    "笔记可以导出成 PDF 吗？", "离线的时候能编辑笔记吗？", "智能笔怎么配对？", "智能笔充满电要多久？",
    "智能笔保修多久？", "发货需要几天？", "怎么删除我的账户？", "数据存放在哪个地区？",
    "可以和别人共享笔记本吗？", "分享链接可以设置密码吗？", "支持哪些平台？", "同步失败怎么办？",
    "如何从印象笔记导入？", "版本历史保留多久？", "附件最大可以多大？", "发票怎么开？",
    "可以用支付宝付款吗？", "学生有优惠吗？", "怎么取消自动续费？", "智能笔连不上蓝牙怎么办？",
    "快捷键有哪些？", "端到端加密怎么用？",
)
FALLBACK_QUESTIONS_EN = (
    "What plans does Nimbus Note offer?", "What are the limits of the free plan?",
    "How much does the Plus plan cost per year?", "Can I get a refund on an annual plan?",
    "How long does a refund take?", "How do I turn on two-factor authentication?",
    "I forgot my password, what should I do?", "Can I export my notes as PDF?",
    "Can I edit notes offline?", "How do I pair the smart pen?", "How long is the pen warranty?",
    "How long does shipping take?", "How do I delete my account?", "Where is my data stored?",
    "Can I share a notebook with my team?", "Can a shared link have a password?",
    "Which platforms are supported?", "Sync keeps failing, how do I fix it?",
    "How do I import from Evernote?", "How long is version history kept?",
    "What is the maximum attachment size?", "How do I get an invoice?",
    "Do you offer a student discount?", "How do I cancel auto-renewal?",
    "The pen will not connect over Bluetooth.", "What keyboard shortcuts are there?",
    "How does end-to-end encryption work?", "How many devices can I sign in on?",
    "Is there a team admin console?", "How do I report a security vulnerability?",
)


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so temporary directories are removed when a run is stopped."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def is_chinese(text: str) -> bool:
    from bot.lang import detect_language

    return detect_language(text) == "zh"


def load_questions(eval_dir: Path, n: int, seed: int = 0) -> tuple[list[str], str]:
    """``n`` query texts, half Chinese and half English, and where they came from.

    Read from ``eval_dir/*/queries.jsonl`` when present (distinct texts, sampled with
    ``seed``); otherwise the built-in demo questions, repeated to reach ``n``.
    """
    zh: list[str] = []
    en: list[str] = []
    files = sorted(eval_dir.glob("*/queries.jsonl")) if eval_dir.is_dir() else []
    for path in files:
        for line in path.read_text("utf-8").splitlines():
            if line.strip():
                query = json.loads(line).get("query", "").strip()
                if query:
                    (zh if is_chinese(query) else en).append(query)
    source = f"{len(files)} query files under {eval_dir}"
    if not zh or not en:
        zh, en = list(FALLBACK_QUESTIONS_ZH), list(FALLBACK_QUESTIONS_EN)
        source = "built-in demo questions (no evaluation sets found)"
    rng = random.Random(seed)
    zh, en = sorted(set(zh)), sorted(set(en))
    rng.shuffle(zh)
    rng.shuffle(en)
    half = n // 2
    picked = _take(zh, n - half) + _take(en, half)
    rng.shuffle(picked)
    return picked, source


def _take(pool: Sequence[str], n: int) -> list[str]:
    return [pool[i % len(pool)] for i in range(n)]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100), like numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def latency_stats(seconds: Sequence[float]) -> dict:
    """p50, p95, mean and max in milliseconds, and the number of samples."""
    ms = [s * 1000.0 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "mean_ms": round(sum(ms) / len(ms), 3) if ms else float("nan"),
        "max_ms": round(max(ms), 3) if ms else float("nan"),
    }


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages (the machine has ``os.cpu_count()`` cores)."""
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain-text table, columns padded, numbers right-aligned."""
    rows = [[_cell(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    numeric = [all(_is_number(r[i]) for r in rows) if rows else False for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("%"))
    except ValueError:
        return text in ("", "-")
    return True

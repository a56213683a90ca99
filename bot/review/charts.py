"""Bar charts as inline SVG, drawn on the server: the review page loads no script, image or
font (its Content-Security-Policy allows none), and an ``<svg>`` element in the page needs none.
Every text in a chart is escaped.

    svg = bar_chart(["05-01", "05-02"], {"answer": [3, 5], "refuse": [1, 0]}, title="Turns per day")
"""

from __future__ import annotations

from typing import Mapping, Sequence

from markupsafe import Markup, escape

__all__ = ["bar_chart", "COLORS"]

#: Series colours by name (others cycle through ``_PALETTE``).
COLORS = {
    "answer": "#3c9a5f", "cautious": "#e0b43c", "sources_only": "#5b8fd9", "refuse": "#d9534f", "canned": "#9aa5b1",
    "passed": "#3c9a5f", "downgraded": "#e0b43c", "sensitive": "#5b8fd9", "attack": "#d9534f",
    "up": "#3c9a5f", "down": "#d9534f", "p50": "#5b8fd9", "p95": "#24303c",
}  # fmt: skip
_PALETTE = ("#5b8fd9", "#3c9a5f", "#e0b43c", "#d9534f", "#8e6cc4", "#9aa5b1")
_WIDTH, _HEIGHT = 760, 250
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 12, 28, 46


def bar_chart(
    categories: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    stacked: bool = True,
    unit: str = "",
) -> Markup:
    """A bar per category: the series stacked (counts per day) or side by side (p50 / p95),
    with a y axis, category labels under the bars and a legend."""
    names = list(series)
    values = [[float(series[name][i] or 0) for name in names] for i in range(len(categories))]
    top = max([sum(v) if stacked else max(v, default=0) for v in values] + [0]) or 1
    step = _nice_step(top)
    top = step * -(-top // step)
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    slot = plot_w / max(len(categories), 1)
    bar = slot * 0.7 / (1 if stacked else max(len(names), 1))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH} {_HEIGHT}" width="{_WIDTH}" '
        f'height="{_HEIGHT}" role="img" aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
        f'<text x="{_LEFT}" y="16" font-size="13" font-weight="600" fill="#1d232a">{escape(title)}</text>',
    ]
    ticks = int(top // step)
    for tick in range(ticks + 1):
        y = _TOP + plot_h - plot_h * tick / ticks
        label = f"{tick * step:g}{unit}"
        parts.append(f'<line x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e7eb"/>')
        parts.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#66717d">{escape(label)}</text>')
    every = max(1, -(-len(categories) // 16))  # at most 16 labels under the bars
    for i, (category, row) in enumerate(zip(categories, values)):
        x0 = _LEFT + slot * i + slot * 0.15
        base = 0.0
        for j, (name, value) in enumerate(zip(names, row)):
            if value <= 0:
                continue
            height = plot_h * value / top
            x = x0 if stacked else x0 + bar * j
            y = _TOP + plot_h - plot_h * (base + value) / top if stacked else _TOP + plot_h - height
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{height:.1f}" fill="{_color(name, j)}">'
                f"<title>{escape(category)} · {escape(name)}: {value:g}{escape(unit)}</title></rect>"
            )
            base += value if stacked else 0
        if i % every == 0:
            cx = _LEFT + slot * (i + 0.5)
            parts.append(f'<text x="{cx:.1f}" y="{_TOP + plot_h + 16}" font-size="11" text-anchor="middle" fill="#1d232a">{escape(category)}</text>')
    x = _LEFT
    for j, name in enumerate(names):
        parts.append(f'<rect x="{x}" y="{_HEIGHT - 16}" width="10" height="10" fill="{_color(name, j)}"/>')
        parts.append(f'<text x="{x + 14}" y="{_HEIGHT - 7}" font-size="11" fill="#1d232a">{escape(name)}</text>')
        x += 22 + 7 * len(name)
    parts.append("</svg>")
    return Markup("".join(parts))


def _color(name: str, index: int) -> str:
    return COLORS.get(name, _PALETTE[index % len(_PALETTE)])


def _nice_step(top: float) -> float:
    """A round tick step giving about four gridlines up to ``top``."""
    raw = top / 4
    magnitude = 10 ** (len(str(int(raw))) - 1) if raw >= 1 else 1
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude

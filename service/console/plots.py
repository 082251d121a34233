"""Small SVG plots drawn on the server: no script, no inline style (the console's
Content-Security-Policy allows neither), every label escaped. Each is an image (``role="img"``)
named by its title, whose ``<desc>`` says its values in text, for whoever cannot see it."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 560, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 14, 40
COLOURS = ("#c0392b", "#2471a3", "#7d3c98", "#d68910", "#17a589", "#566573")


LEGEND_ROW = 14
"""Pixels between rows of legend keys."""


def _text_width(text: str, size: float) -> float:
    """About how wide ``text`` is drawn at font ``size``: a CJK character a square, a Latin one
    a little over half of one."""
    return sum(size if ord(c) >= 0x2E80 else size * 0.6 for c in text)


def _legend(legend: Sequence[tuple[str, str]]) -> tuple[list[str], int]:
    """The keys left to right, onto a row below where one would pass the plot's right edge
    (English names are long: five heads do not fit in one row); the rows taken."""
    keys: list[str] = []
    x, row = float(LEFT), 0
    for name, colour in legend:
        wide = 14 + _text_width(name, 11)
        if x > LEFT and x + wide > WIDTH - RIGHT:
            x, row = float(LEFT), row + 1
        y = HEIGHT - 12 + row * LEGEND_ROW
        keys.append(
            f'<rect x="{x:.0f}" y="{y}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14:.0f}" y="{y + 9}" font-size="11">{escape(name)}</text>'
        )
        x += wide + 16
    return keys, row + 1 if legend else 0


def _listed(values: Sequence[tuple[str, object]]) -> str:
    """``values`` as text, each after its label: "rumor: 3; incitement: 5"."""
    return "; ".join(f"{label}: {value}" for label, value in values)


def _frame(
    body: list[str],
    title: str,
    no_data: str,
    legend: Sequence[tuple[str, str]] = (),
    *,
    empty: bool = False,
    values: str = "",
) -> Markup:
    """The plot: ``body`` under ``title`` (its accessible name), with ``no_data`` written across
    it when it is ``empty``, so that an empty frame is not read as zeros; ``values`` is what it
    shows in text, its description (``no_data`` for an empty one)."""
    if empty:
        body = [
            *body,
            f'<text class="empty" x="{(LEFT + WIDTH - RIGHT) / 2:.0f}" '
            f'y="{(TOP + HEIGHT - BOTTOM) / 2:.0f}" font-size="13" text-anchor="middle" '
            f'fill="#666">{escape(no_data)}</text>',
        ]
    keys, rows = _legend(legend)
    height = HEIGHT + max(rows - 1, 0) * LEGEND_ROW
    return Markup(
        f'<svg class="plot" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title><desc>{escape(no_data if empty else values)}</desc>"
        f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}" '
        f'stroke="#888"/>{"".join(body)}{"".join(keys)}</svg>'
    )


def _scale(top: float) -> tuple[float, list[str]]:
    """Pixels per unit, and the y-axis labels: 0, and the top where there is one (a plot of
    nothing has no scale to label, and says "no data")."""
    span = HEIGHT - BOTTOM - TOP
    labels = [
        f'<text x="{LEFT - 4}" y="{HEIGHT - BOTTOM}" font-size="10" text-anchor="end">0</text>'
    ]
    if top > 0:
        labels.append(
            f'<text x="{LEFT - 4}" y="{TOP + 8}" font-size="10" text-anchor="end">'
            f"{escape(f'{top:g}')}</text>"
        )
    return span / max(top, 1e-9), labels


def bars(
    labels: Sequence[str],
    stacks: Sequence[Sequence[float]],
    title: str,
    legend: Sequence[str] = (),
    *,
    no_data: str,
) -> Markup:
    """One bar per label, each a stack of values (one value: a plain bar)."""
    if not labels:
        return _frame([], title, no_data, empty=True)
    per, body = _scale(max(sum(s) for s in stacks))
    slot = (WIDTH - LEFT - RIGHT) / len(labels)
    for i, (label, stack) in enumerate(zip(labels, stacks, strict=True)):
        x, base = LEFT + i * slot + slot * 0.15, float(HEIGHT - BOTTOM)
        for j, value in enumerate(stack):
            height = value * per
            base -= height
            body.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{slot * 0.7:.1f}" '
                f'height="{height:.1f}" fill="{COLOURS[j % len(COLOURS)]}">'
                f"<title>{escape(label)}: {value:g}</title></rect>"
            )
        body.append(
            f'<text x="{x + slot * 0.35:.1f}" y="{HEIGHT - BOTTOM + 13}" font-size="10" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
        # the stack's total over it: the open items of an age, read without the axis
        body.append(
            f'<text class="total" x="{x + slot * 0.35:.1f}" y="{base - 3:.1f}" font-size="10" '
            f'text-anchor="middle">{sum(stack):g}</text>'
        )
    keys = [(name, COLOURS[j % len(COLOURS)]) for j, name in enumerate(legend)]
    said = _listed(
        [
            (
                label,
                ", ".join(f"{name} {v:g}" for name, v in zip(legend, stack, strict=True))
                if legend
                else f"{sum(stack):g}",
            )
            for label, stack in zip(labels, stacks, strict=True)
        ]
    )
    return _frame(body, title, no_data, keys, empty=not any(any(s) for s in stacks), values=said)


def lines(
    x_labels: Sequence[str], series: dict[str, Sequence[float]], title: str, *, no_data: str
) -> Markup:
    """One line per series over ``x_labels``."""
    if not x_labels:
        return _frame([], title, no_data, empty=True)
    per, body = _scale(max((max(v, default=0) for v in series.values()), default=0))
    step = (WIDTH - LEFT - RIGHT) / max(1, len(x_labels) - 1)
    for j, (name, values) in enumerate(series.items()):
        points = " ".join(
            f"{LEFT + i * step:.1f},{HEIGHT - BOTTOM - v * per:.1f}" for i, v in enumerate(values)
        )
        body.append(
            f'<polyline points="{points}" fill="none" stroke-width="2" '
            f'stroke="{COLOURS[j % len(COLOURS)]}"><title>{escape(name)}</title></polyline>'
        )
    for i in (0, len(x_labels) - 1):
        body.append(
            f'<text x="{LEFT + i * step:.1f}" y="{HEIGHT - BOTTOM + 13}" font-size="10" '
            f'text-anchor="{"start" if i == 0 else "end"}">{escape(x_labels[i])}</text>'
        )
    keys = [(name, COLOURS[j % len(COLOURS)]) for j, name in enumerate(series)]
    said = _listed(
        [
            (name, ", ".join(f"{x} {v:g}" for x, v in zip(x_labels, values, strict=True)))
            for name, values in series.items()
        ]
    )
    empty = not any(any(v) for v in series.values())
    return _frame(body, title, no_data, keys, empty=empty, values=said)


def histogram(
    values: Sequence[float],
    threshold: float,
    title: str,
    bins: int = 20,
    *,
    no_data: str,
    marked: str,
) -> Markup:
    """Scores in [0, 1] in ``bins`` bins, with the review threshold as a dashed line, named
    ``marked`` in the plot's text."""
    counts = [0] * bins
    for value in values:
        counts[min(bins - 1, max(0, int(value * bins)))] += 1
    per, body = _scale(max(counts, default=0))
    slot = (WIDTH - LEFT - RIGHT) / bins
    for i, count in enumerate(counts):
        colour = COLOURS[0] if (i + 1) / bins > threshold else COLOURS[1]
        body.append(
            f'<rect x="{LEFT + i * slot + 1:.1f}" y="{HEIGHT - BOTTOM - count * per:.1f}" '
            f'width="{slot - 2:.1f}" height="{count * per:.1f}" fill="{colour}">'
            f"<title>{i / bins:.2f}–{(i + 1) / bins:.2f}: {count}</title></rect>"
        )
    x = LEFT + threshold * (WIDTH - LEFT - RIGHT)
    # the threshold's value beside its line, on the left of one too near the right edge
    label = f'x="{x + 3:.1f}"' if threshold < 0.9 else f'x="{x - 3:.1f}" text-anchor="end"'
    body.append(
        f'<line class="threshold" x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{HEIGHT - BOTTOM}" '
        f'stroke="#000" stroke-dasharray="4 3"/>'
        f'<text class="threshold" {label} y="{TOP + 10}" font-size="10">{threshold:.2f}</text>'
    )
    for tick in (0.0, 0.5, 1.0):
        body.append(
            f'<text x="{LEFT + tick * (WIDTH - LEFT - RIGHT):.1f}" y="{HEIGHT - BOTTOM + 13}" '
            f'font-size="10" text-anchor="middle">{tick:g}</text>'
        )
    said = _listed(
        [
            (marked, f"{threshold:.2f}"),
            *((f"{i / bins:.2f}–{(i + 1) / bins:.2f}", n) for i, n in enumerate(counts)),
        ]
    )
    return _frame(body, title, no_data, empty=not values, values=said)

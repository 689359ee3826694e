"""Charts drawn by the app itself, as inline SVG (no script, nothing fetched: it works offline).
Each chart is shown with its numbers in a table beside it; the SVG is a picture of that table."""

from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import mark_safe

COLORS = ["#2f6fdb", "#37a169", "#e3a008", "#c2410c", "#7c3aed", "#64748b"]
LABEL_WIDTH, BAR_WIDTH, ROW_HEIGHT = 110, 260, 24


def _legend(series: list[str], y: int) -> list[str]:
    parts, x = [], 10
    for n, name in enumerate(series):
        if x + 24 + 6 * len(name) > LABEL_WIDTH + BAR_WIDTH:
            x, y = 10, y + 14
        parts.append(
            f'<rect x="{x}" y="{y}" width="10" height="10" fill="{COLORS[n % len(COLORS)]}"/>'
            f'<text x="{x + 14}" y="{y + 9}" font-size="11">{escape(name)}</text>'
        )
        x += 24 + 6 * len(name)
    return parts


def _share(part, whole) -> float:
    """What part of whole a segment is: the amounts stay Decimal, only the picture's length is a float."""
    return float(Decimal(part) / Decimal(whole))


def stacked_bars(title: str, rows: list[tuple[str, list]], series: list[str], *, normalize: bool = False) -> str:
    """One horizontal bar per row, its segments stacked in `series` order. `normalize`: every bar
    is its own 100% (rows in different units, e.g. assets)."""
    top = max((sum(values) for _, values in rows), default=0) or 1
    height = ROW_HEIGHT * len(rows) + 44
    parts = [
        f'<svg role="img" aria-label="{escape(title)}" viewBox="0 0 {LABEL_WIDTH + BAR_WIDTH + 10} {height}" '
        f'width="{LABEL_WIDTH + BAR_WIDTH + 10}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for n, (label, values) in enumerate(rows):
        y, x = n * ROW_HEIGHT + 4, LABEL_WIDTH
        whole = (sum(values) or 1) if normalize else top
        parts.append(
            f'<text x="{LABEL_WIDTH - 6}" y="{y + 13}" font-size="11" text-anchor="end">{escape(label)}</text>'
        )
        parts.append(f'<rect x="{LABEL_WIDTH}" y="{y}" width="{BAR_WIDTH}" height="16" fill="#eef1f5"/>')
        for k, value in enumerate(values):
            width = BAR_WIDTH * _share(value, whole)
            if width > 0:
                parts.append(
                    f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="16" fill="{COLORS[k % len(COLORS)]}"/>'
                )
                x += width
    parts += _legend(series, ROW_HEIGHT * len(rows) + 12)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every text in it went through escape()


def stacked_columns(title: str, columns: list[tuple[str, list]], series: list[str]) -> str:
    """One vertical column per entry (e.g. a day), its segments stacked in `series` order."""
    width, plot = LABEL_WIDTH + BAR_WIDTH + 10, 120
    top = max((sum(values) for _, values in columns), default=0) or 1
    step = BAR_WIDTH / max(len(columns), 1)
    parts = [
        f'<svg role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {plot + 62}" width="{width}" '
        f'height="{plot + 62}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
        f'<text x="{LABEL_WIDTH - 6}" y="12" font-size="11" text-anchor="end">{top:g}</text>',
        f'<text x="{LABEL_WIDTH - 6}" y="{plot}" font-size="11" text-anchor="end">0</text>',
        f'<line x1="{LABEL_WIDTH}" y1="{plot}" x2="{LABEL_WIDTH + BAR_WIDTH}" y2="{plot}" stroke="#999"/>',
    ]
    for n, (label, values) in enumerate(columns):
        x, y = LABEL_WIDTH + n * step + step * 0.15, plot
        for k, value in enumerate(values):
            h = (plot - 8) * _share(value, top)
            if h > 0:
                y -= h
                parts.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" height="{h:.1f}" '
                    f'fill="{COLORS[k % len(COLORS)]}"/>'
                )
        if len(columns) <= 10 or n % max(len(columns) // 8, 1) == 0:
            parts.append(
                f'<text x="{x + step * 0.35:.1f}" y="{plot + 13}" font-size="10" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    parts += _legend(series, plot + 26)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every text in it went through escape()

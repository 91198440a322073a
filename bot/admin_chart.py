"""The /stats funnel chart: captured → analyzed → approved → exported per day.

matplotlib is the optional ``plot`` extra: without it there is no chart (text only). The figure
is drawn through the object API on an Agg canvas, so the host process's pyplot backend and
global state are never touched.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

STAGES = ("captured", "analyzed", "approved", "exported")
COLORS = ("#9bb7d4", "#5b8db8", "#2e7d32", "#f9a825")


def last_days(n: int, today: datetime | None = None) -> list[str]:
    t = today or datetime.now(UTC)
    return [(t - timedelta(days=i)).strftime("%Y-%m-%d") for i in range(n - 1, -1, -1)]


def funnel(per_day: dict[str, dict[str, int]]) -> dict[str, list[int]]:
    """Per stage, one figure per day; approved = approved by QA + approved in review that day."""
    out: dict[str, list[int]] = {s: [] for s in STAGES}
    for d in per_day.values():
        out["captured"].append(d.get("captured", 0))
        out["analyzed"].append(d.get("analyzed", 0))
        out["approved"].append(d.get("qa_passed", 0) + d.get("review_approved", 0))
        out["exported"].append(d.get("exported", 0))
    return out


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def funnel_png(per_day: dict[str, dict[str, int]]) -> bytes | None:
    """A PNG of the funnel, or None when matplotlib is not installed. CPU work: call it in a thread."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return None
    days = list(per_day)
    series = funnel(per_day)
    fig = Figure(figsize=(8, 4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / len(STAGES)
    for i, (stage, color) in enumerate(zip(STAGES, COLORS, strict=True)):
        xs = [x + (i - (len(STAGES) - 1) / 2) * width for x in range(len(days))]
        ax.bar(xs, series[stage], width=width, label=stage, color=color)
    ax.set_xticks(range(len(days)), [d[5:] for d in days], rotation=45, fontsize=8)
    ax.set_ylabel("records")
    top = max((v for vs in series.values() for v in vs), default=0)
    ax.set_ylim(0, max(top * 1.25, 1))   # headroom for the legend above the bars
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"tuneloop funnel, last {len(days)} days (UTC)")
    ax.legend(fontsize=8, ncols=4, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()

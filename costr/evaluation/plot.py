"""`costr eval --plot`: quality kept against cost, one panel per dataset.

x is the cost of a routing mix relative to sending everything to the strong model; y is the
mix's quality relative to the strong model's. Each panel shows random routing (the straight line
from weak-only to strong-only), the scorer's curve (route the highest-scored share to the strong
model) and each policy's point. SVG is written by hand; PNG needs matplotlib.
"""
from __future__ import annotations

from html import escape
from pathlib import Path

from costr.evaluation.report import EvalError

PANEL, MARGIN, MAX_POINTS = 320, 48, 400
COLOURS = ["#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]


def panels(report: dict) -> list[dict]:
    """What each panel draws, in plot units: x = relative cost, y = quality kept."""
    out = []
    for d in report["datasets"]:
        curve = d["curve"]
        strong_q, strong_c = curve.quality[-1], curve.cost[-1]
        if strong_q <= 0 or strong_c <= 0:
            continue
        step = max(1, len(curve.x) // MAX_POINTS)
        keep = list(range(0, len(curve.x), step)) + [len(curve.x) - 1]
        line = [(curve.cost[j] / strong_c, curve.quality[j] / strong_q) for j in keep]
        points = [(name, 1.0 - p["savings"]["value"], p["quality_kept"]["value"])
                  for name, p in d["policies"].items() if p["quality_kept"]["value"] is not None]
        out.append({"title": f"{d['dataset']} (APGR {d['apgr']['value'] or 0:.3f})",
                    "random": [line[0], (1.0, 1.0)], "curve": line, "points": points})
    return out


def write_plot(path: str, report: dict) -> None:
    data = panels(report)
    if not data:
        raise EvalError("nothing to plot: no dataset has a positive strong-model quality and cost")
    try:
        if path.lower().endswith(".png"):
            _write_png(path, data)
        else:
            Path(path).write_text(svg(data))
    except OSError as exc:
        raise EvalError(f"{path}: cannot write: {exc.strerror or exc}") from None


def _y_range(panel: dict) -> tuple[float, float]:
    ys = [y for _, y in panel["curve"]] + [y for _, _, y in panel["points"]] + [1.0]
    low = min(ys)
    return max(0.0, low - 0.05), max(ys) + 0.02


def svg(data: list[dict]) -> str:
    width, height = len(data) * (PANEL + MARGIN) + MARGIN, PANEL + 2 * MARGIN
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>']
    for i, panel in enumerate(data):
        parts.append(_svg_panel(panel, MARGIN + i * (PANEL + MARGIN), MARGIN))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _svg_panel(panel: dict, left: float, top: float) -> str:
    y0, y1 = _y_range(panel)

    def at(x: float, y: float) -> str:
        return f"{left + x * PANEL:.1f},{top + (1 - (y - y0) / (y1 - y0)) * PANEL:.1f}"

    out = [f'<g><text x="{left + PANEL / 2}" y="{top - 14}" text-anchor="middle" '
           f'font-size="13">{escape(panel["title"])}</text>',
           f'<rect x="{left}" y="{top}" width="{PANEL}" height="{PANEL}" fill="none" stroke="#333"/>']
    for k in range(6):
        x, y = k / 5, y0 + k * (y1 - y0) / 5
        px, py = at(x, y0).split(","), at(0, y).split(",")
        out.append(f'<text x="{px[0]}" y="{top + PANEL + 14}" text-anchor="middle">{x:.1f}</text>')
        out.append(f'<text x="{left - 4}" y="{float(py[1]) + 4:.1f}" text-anchor="end">{y:.2f}</text>')
    out.append(f'<text x="{left + PANEL / 2}" y="{top + PANEL + 32}" text-anchor="middle">'
               "cost relative to strong only</text>")
    out.append(f'<text transform="translate({left - 36},{top + PANEL / 2}) rotate(-90)" '
               'text-anchor="middle">quality kept</text>')
    out.append(f'<polyline class="random" points="{" ".join(at(*p) for p in panel["random"])}" '
               'fill="none" stroke="#888" stroke-dasharray="5,4"/>')
    out.append(f'<polyline class="scorer" points="{" ".join(at(*p) for p in panel["curve"])}" '
               'fill="none" stroke="#1f77b4" stroke-width="1.5"/>')
    for j, (name, x, y) in enumerate(panel["points"]):
        cx, cy = at(x, y).split(",")
        colour = COLOURS[j % len(COLOURS)]
        right = x > 0.8  # label on the left, inside the panel
        anchor = ' text-anchor="end"' if right else ""
        out.append(f'<circle class="policy" cx="{cx}" cy="{cy}" r="4" fill="{colour}"/>'
                   f'<text x="{float(cx) + (-6 if right else 6):.1f}" '
                   f'y="{float(cy) + 4 + 12 * (j % 2):.1f}" fill="{colour}"'
                   f'{anchor}>{escape(name)}</text>')
    out.append(f'<text x="{left + PANEL - 6}" y="{top + PANEL - 22}" text-anchor="end" '
               'fill="#1f77b4">scorer</text>')
    out.append(f'<text x="{left + PANEL - 6}" y="{top + PANEL - 8}" text-anchor="end" '
               'fill="#888">random</text></g>')
    return "\n".join(out)


def _write_png(path: str, data: list[dict]) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EvalError("a .png plot needs matplotlib (pip install matplotlib); "
                        "or write an SVG: --plot FILE.svg") from None
    fig, axes = plt.subplots(1, len(data), figsize=(4.2 * len(data), 4.2), squeeze=False)
    for ax, panel in zip(axes[0], data):
        ax.plot(*zip(*panel["random"]), "--", color="#888", label="random")
        ax.plot(*zip(*panel["curve"]), color="#1f77b4", label="scorer")
        for j, (name, x, y) in enumerate(panel["points"]):
            ax.plot([x], [y], "o", color=COLOURS[j % len(COLOURS)])
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 3))
        ax.set_title(panel["title"])
        ax.set_xlabel("cost relative to strong only")
        ax.set_ylabel("quality kept")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(*_y_range(panel))
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

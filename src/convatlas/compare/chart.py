"""The chart of the notes: top-1 accuracy against operations, each network a circle whose area
is proportional to its parameters (after Canziani, Paszke & Culurciello 2016, Fig. 2)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from convatlas._io import atomic_save

__all__ = ["Point", "BubbleFigure", "bubble_chart", "draw_bubble_chart", "place_labels", "size_legend_values"]


@dataclass(frozen=True)
class Point:
    """One network on the chart."""

    name: str
    family: str
    params: int
    macs: int
    accuracy: float | None  # the score on the y axis, percent: top-1 accuracy, or mIoU for segmentation
    year: int | None = None
    accuracy_source: str = ""
    latency_ms: float | None = None


def size_legend_values(params: Sequence[int], count: int = 4) -> list[int]:
    """Round parameter counts (1-2-5 steps) spanning the data, for the circle-size legend."""
    lo, hi = max(min(params), 1), max(max(params), 1)
    nice = [m * 10**e for e in range(0, 12) for m in (1, 2, 5)]
    inside = [v for v in nice if lo <= v <= hi] or [hi]
    if len(inside) <= count:
        return inside
    step = (len(inside) - 1) / (count - 1)
    return [inside[round(i * step)] for i in range(count)]


def _fmt_params(n: float) -> str:
    return f"{n / 1e6:g}M" if n >= 1e6 else f"{n / 1e3:g}K"


# --------------------------------------------------------------------------------------------
# Labels without collisions: a greedy placer in display coordinates.

_LABEL_GAP = 2.0    # pixels between a circle and its label, and around every label box
_COVER_COST = 5.0   # cost of a label box lying wholly on circles (in proportion to the part that does)
_MAX_COVER = 3.0    # cost of a label box covering a circle's centre
_CROSS_COST = 1.0   # cost of a leader line crossing another, or crossing a label
_THROUGH_COST = 0.1  # cost of a leader line passing through the middle of a circle
_NEARER_COST = 0.5  # cost of a moved label lying nearer another circle than its own
_RING_COST = 0.04   # cost of each ring farther out (about 0.6 label heights)
_MORE_RINGS = 40    # rings searched beyond the first free place for a cheaper one


def _boxes_overlap(candidates: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(n,) True where candidate box i (x0, y0, x1, y1) overlaps any of ``boxes`` (m, 4)."""
    if len(boxes) == 0:
        return np.zeros(len(candidates), dtype=bool)
    c, b = candidates[:, None, :], boxes[None, :, :]
    return ((c[..., 0] < b[..., 2]) & (b[..., 0] < c[..., 2]) & (c[..., 1] < b[..., 3]) & (b[..., 1] < c[..., 3])).any(1)


def _box_circle_gap(boxes: np.ndarray, circles: np.ndarray) -> np.ndarray:
    """(n, m): distance from each box (x0, y0, x1, y1) to the edge of each circle (x, y, r);
    negative where the box reaches inside the circle, ``-r`` where it covers the centre."""
    dx = np.maximum(np.maximum(boxes[:, None, 0] - circles[None, :, 0], circles[None, :, 0] - boxes[:, None, 2]), 0)
    dy = np.maximum(np.maximum(boxes[:, None, 1] - circles[None, :, 1], circles[None, :, 1] - boxes[:, None, 3]), 0)
    return np.hypot(dx, dy) - circles[None, :, 2]


def _on_circles(boxes: np.ndarray, circles: np.ndarray) -> np.ndarray:
    """(n,): the fraction of each box lying on circles, measured on a 9 x 3 grid of points."""
    if len(circles) == 0:
        return np.zeros(len(boxes))
    fx, fy = np.meshgrid(np.linspace(0, 1, 9), np.linspace(0, 1, 3))
    sx = boxes[:, 0, None] + fx.ravel()[None, :] * (boxes[:, 2] - boxes[:, 0])[:, None]  # (n, 27)
    sy = boxes[:, 1, None] + fy.ravel()[None, :] * (boxes[:, 3] - boxes[:, 1])[:, None]
    inside = (sx[..., None] - circles[:, 0]) ** 2 + (sy[..., None] - circles[:, 1]) ** 2 < circles[:, 2] ** 2
    return inside.any(axis=2).mean(axis=1)


def _segments_hit_boxes(segments: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(n, m): whether segment i (x0, y0, x1, y1) passes through box j (Liang-Barsky clipping)."""
    if len(segments) == 0 or len(boxes) == 0:
        return np.zeros((len(segments), len(boxes)), dtype=bool)
    x0, y0 = segments[:, None, 0], segments[:, None, 1]
    dx, dy = segments[:, None, 2] - x0, segments[:, None, 3] - y0
    low = np.zeros((len(segments), len(boxes)))
    high = np.ones_like(low)
    hit = np.ones_like(low, dtype=bool)
    for p, q in ((-dx, x0 - boxes[None, :, 0]), (dx, boxes[None, :, 2] - x0),
                 (-dy, y0 - boxes[None, :, 1]), (dy, boxes[None, :, 3] - y0)):
        p, q = np.broadcast_to(p, low.shape), np.broadcast_to(q, low.shape)
        parallel = p == 0
        hit &= ~(parallel & (q < 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(parallel, 0.0, q / np.where(parallel, 1.0, p))
        low = np.where(~parallel & (p < 0), np.maximum(low, t), low)
        high = np.where(~parallel & (p > 0), np.minimum(high, t), high)
    return hit & (low <= high)


def _segments_cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m): whether segment a_i crosses segment b_j (strictly: sharing an end does not count)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), dtype=bool)

    def side(p, q, r):  # the sign of the turn p -> q -> r
        return np.sign((q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1]) - (q[..., 1] - p[..., 1]) * (r[..., 0] - p[..., 0]))

    a0, a1 = a[:, None, :2], a[:, None, 2:]
    b0, b1 = b[None, :, :2], b[None, :, 2:]
    return (side(a0, a1, b0) * side(a0, a1, b1) < 0) & (side(b0, b1, a0) * side(b0, b1, a1) < 0)


def _through_circles(segments: np.ndarray, circles: np.ndarray) -> np.ndarray:
    """(n,): how many circles each segment passes through near the centre (within half the radius)."""
    if len(circles) == 0:
        return np.zeros(len(segments))
    a, d = segments[:, None, :2], segments[:, None, 2:] - segments[:, None, :2]
    t = np.clip(((circles[None, :, :2] - a) * d).sum(2) / np.maximum((d * d).sum(2), 1e-9), 0, 1)
    nearest = a + t[..., None] * d
    return (np.linalg.norm(circles[None, :, :2] - nearest, axis=2) < 0.5 * circles[None, :, 2]).sum(1)


def _directions(count: int) -> np.ndarray:
    """``count`` directions (angles) around a circle: right, left, above, below first, then between."""
    grid = np.linspace(0, 2 * np.pi, max(count, 4), endpoint=False)
    first = np.array([0.0, np.pi, np.pi / 2, 3 * np.pi / 2])
    between = grid[np.abs(np.round(grid / (np.pi / 2)) * (np.pi / 2) - grid) > 1e-6]
    return np.concatenate([first, between])


def _rings(centre: np.ndarray, radius: float, size: np.ndarray, rings: range, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Candidate label boxes (n, 4) around a circle on ``rings`` (ring ``k``: ``k`` steps out from
    touching it), and the ring of each. Along each direction the box's centre is pushed out by
    the distance plus half its own extent, so the box clears the circle; ring 0 tries 8
    directions, farther rings more (up to 48), right, left, above and below first."""
    boxes, which = [], []
    w, h = size
    for ring in rings:
        angles = _directions(8 if ring == 0 else min(8 + 4 * ring, 48))
        distance = radius + _LABEL_GAP + ring * step
        cx = centre[0] + np.cos(angles) * (distance + w / 2)
        cy = centre[1] + np.sin(angles) * (distance + h / 2)
        boxes.append(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1))
        which.append(np.full(len(angles), ring))
    return np.concatenate(boxes), np.concatenate(which)


class _Placer:
    """The state of :func:`place_labels`: the boxes placed so far and their leader lines."""

    def __init__(self, centres: np.ndarray, radii: np.ndarray, sizes: np.ndarray,
                 area: tuple[float, float, float, float], keep_out: np.ndarray) -> None:
        self.centres, self.radii, self.sizes, self.area = centres, radii, sizes, area
        self.circles = np.column_stack([centres, radii])
        self.keep_out = keep_out
        self.boxes = np.zeros((len(centres), 4))
        self.rings = np.zeros(len(centres), dtype=int)
        self.placed = np.zeros(len(centres), dtype=bool)

    def _leaders(self, centres: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Leader lines (n, 4) from ``centres`` (n, 2) (or one centre) to the middles of ``boxes``."""
        middle = (boxes[:, :2] + boxes[:, 2:]) / 2
        return np.column_stack([np.broadcast_to(centres, middle.shape), middle])

    def costs(self, i: int, candidates: np.ndarray, rings: np.ndarray) -> np.ndarray:
        """(n,) what is wrong with label ``i`` at each candidate box (on ring ``rings[k]``),
        ``inf`` where it cannot go.

        Forbidden: leaving the axes, overlapping a placed label or the legend. Costs: the part of
        the box lying on other circles, every centre it covers (its own included), every leader
        line it crosses; with a leader line of its own (``ring > 0``), the labels and leader
        lines that line crosses, the circles it passes through, a circle nearer to the label
        than its own (which the label would seem to name), and the distance.
        """
        x0, y0, x1, y1 = self.area
        gap = _LABEL_GAP
        others = np.flatnonzero(self.placed & (np.arange(len(self.placed)) != i))
        taken = np.vstack([self.keep_out, self.boxes[others]])
        free = ((candidates[:, 0] >= x0 + gap) & (candidates[:, 2] <= x1 - gap)
                & (candidates[:, 1] >= y0 + gap) & (candidates[:, 3] <= y1 - gap)
                & ~_boxes_overlap(candidates + np.array([-gap, -gap, gap, gap]), taken))
        cost = np.full(len(candidates), np.inf)
        if not free.any():
            return cost
        boxes, away = candidates[free], rings[free] > 0
        rest = np.delete(self.circles, i, axis=0)
        gaps = _box_circle_gap(boxes, self.circles)  # (n, all circles)
        found = _COVER_COST * _on_circles(boxes, rest) + _MAX_COVER * (gaps <= -self.circles[:, 2]).sum(1)
        moved = others[self.rings[others] > 0]
        placed_leaders = self._leaders(self.centres[moved], self.boxes[moved])
        found += _CROSS_COST * _segments_hit_boxes(placed_leaders, boxes).sum(0)
        leaders = self._leaders(self.centres[i], boxes)
        own_line = (_CROSS_COST * _segments_hit_boxes(leaders, self.boxes[others]).sum(1)
                    + _CROSS_COST * _segments_cross(leaders, placed_leaders).sum(1)
                    + _THROUGH_COST * _through_circles(leaders, rest))
        if len(rest):
            own_line += _NEARER_COST * (np.delete(gaps, i, axis=1).min(axis=1) < gaps[:, i])
        found += np.where(away, own_line, 0.0)
        cost[free] = found + _RING_COST * rings[free]  # farther is worse: a long leader line is harder to follow
        return cost

    def search(self, i: int) -> tuple[float, int, np.ndarray] | None:
        """The cheapest free place for label ``i`` as (cost, ring, box), looking out ring by ring
        (ten at a time) until the rings left could only cost more, or ``_MORE_RINGS`` beyond the
        best so far; None if there is no free place in the axes."""
        step = max(4.0, 0.6 * self.sizes[i][1])
        x0, y0, x1, y1 = self.area
        last = int(np.hypot(x1 - x0, y1 - y0) / step) + 1
        best: tuple[float, int, np.ndarray] | None = None
        for start in range(0, last, 10):
            candidates, rings = _rings(self.centres[i], self.radii[i], self.sizes[i], range(start, start + 10), step)
            costs = self.costs(i, candidates, rings)
            k = int(np.argmin(costs))  # the first of equals: the nearest ring, the preferred direction
            if np.isfinite(costs[k]) and (best is None or costs[k] < best[0]):
                best = (float(costs[k]), int(rings[k]), candidates[k])
            if best is not None and (best[0] <= _RING_COST * (start + 10) or start + 10 > best[1] + _MORE_RINGS):
                break
        return best

    def search_beside(self, i: int) -> tuple[float, int, np.ndarray] | None:
        """The cheapest free place right against the circle (ring 0)."""
        candidates, rings = _rings(self.centres[i], self.radii[i], self.sizes[i], range(1),
                                   max(4.0, 0.6 * self.sizes[i][1]))
        costs = self.costs(i, candidates, rings)
        k = int(np.argmin(costs))
        return (float(costs[k]), 0, candidates[k]) if np.isfinite(costs[k]) else None

    def commit(self, i: int, ring: int, box: np.ndarray) -> None:
        self.boxes[i], self.rings[i], self.placed[i] = box, ring, True

    def cost_now(self, i: int) -> float:
        return float(self.costs(i, self.boxes[i][None], self.rings[i : i + 1])[0])


def place_labels(
    centres: np.ndarray,
    radii: np.ndarray,
    sizes: np.ndarray,
    area: tuple[float, float, float, float],
    keep_out: Sequence[tuple[float, float, float, float]] = (),
    *,
    sweeps: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy label placement in display pixels: the box of each label (sizes (n, 2): width,
    height) goes next to its circle (centres (n, 2), radii (n,)) if it can, else farther out.

    Candidate boxes lie on rings of growing distance around the label's circle (:func:`_ring`).
    A candidate is rejected if it overlaps a box already placed or one of ``keep_out`` (the
    legend), or leaves ``area`` (x0, y0, x1, y1: the axes) -- so no two labels overlap. Among
    the others the cheapest is taken (``_Placer.costs``: circles covered, leader lines crossed,
    distance). First every label that can sit right against its circle covering nothing does,
    the least crowded first; then the rest, most crowded first, search outwards. Then ``sweeps``
    times every label that is not free of cost is lifted and put back at its cheapest place
    given all the others, which undoes the worst choices of the greedy order. Returns the boxes
    (n, 4) and whether each label was moved away from its circle (it then needs a leader line).
    A label with no free place anywhere (an axes full of labels) is left centred on its point.
    """
    placer = _Placer(np.asarray(centres, float), np.asarray(radii, float), np.asarray(sizes, float), area,
                     np.array(list(keep_out), dtype=float).reshape(-1, 4))
    n = len(placer.centres)
    distances = np.linalg.norm(placer.centres[:, None, :] - placer.centres[None, :, :], axis=2)
    crowding = (distances < 80.0).sum(1)
    for i in sorted(range(n), key=lambda i: (crowding[i], placer.centres[i, 0])):
        best = placer.search_beside(i)
        if best is not None and best[0] == 0:
            placer.commit(i, 0, best[2])
    for i in sorted(np.flatnonzero(~placer.placed), key=lambda i: (-crowding[i], placer.centres[i, 0])):
        best = placer.search(i)
        if best is None:
            (x, y), (w, h) = placer.centres[i], placer.sizes[i]
            best = (np.inf, 0, np.array([x - w / 2, y - h / 2, x + w / 2, y + h / 2]))
        placer.commit(i, best[1], best[2])
    for _ in range(sweeps):
        for i in range(n):
            now = placer.cost_now(i)
            if now == 0:
                continue
            best = placer.search(i)
            if best is not None and best[0] < now:
                placer.commit(i, best[1], best[2])
    return placer.boxes, placer.rings > 0


# --------------------------------------------------------------------------------------------
# The chart.


@dataclass
class BubbleFigure:
    """A drawn bubble chart: the matplotlib figure and axes, the label of each drawn point
    (``labels[k]`` names ``points[k]``) and whether it was moved away from its circle (drawn with
    a leader line)."""

    figure: Any
    axes: Any
    points: list[Point]
    labels: list[Any]
    moved: list[bool]


def draw_bubble_chart(
    points: Sequence[Point],
    *,
    x: str = "macs",
    title: str = "Top-1 accuracy vs operations (circle area ∝ parameters)",
    log_x: bool | None = None,
    y_label: str = "top-1 accuracy (%)",
) -> BubbleFigure:
    """Draw the chart of :func:`bubble_chart` without writing it; labels are placed by
    :func:`place_labels` so that no two overlap."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    if x not in ("macs", "latency"):
        raise ValueError(f"x must be 'macs' or 'latency', got {x!r}")
    shown = [p for p in points if p.accuracy is not None and (x == "macs" or p.latency_ms is not None)]
    if not shown:
        raise ValueError("no point has an accuracy (and latency, for x='latency') to draw")
    # GMACs for ImageNet-sized networks, MMACs for small ones (the demo's digits networks).
    mac_unit, mac_scale = ("G", 1e9) if max(p.macs for p in shown) >= 1e8 else ("M", 1e6)
    xs = [p.macs / mac_scale if x == "macs" else p.latency_ms for p in shown]
    ys = [p.accuracy for p in shown]
    biggest = max(p.params for p in shown)
    area = lambda n: 30 + 2500 * n / biggest  # noqa: E731 - points^2, proportional to params
    if log_x is None:
        log_x = max(xs) / max(min(xs), 1e-12) > 50

    families = sorted({p.family for p in shown})
    cmap = matplotlib.colormaps["tab20" if len(families) > 10 else "tab10"]
    colour = {f: cmap(i % cmap.N) for i, f in enumerate(families)}
    fig = Figure(figsize=(11, 7), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for p, xv, yv in zip(shown, xs, ys):
        ax.scatter(xv, yv, s=area(p.params), color=colour[p.family], alpha=0.55, edgecolors="black", linewidths=0.6)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(f"{mac_unit}MACs per image (multiply-accumulates of conv + linear layers)" if x == "macs"
                  else "CPU latency per image, ms (batch 1)")
    ax.set_ylabel(y_label)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    pad = (max(ys) - min(ys)) * 0.12 or 1.0
    ax.set_ylim(min(ys) - pad, max(ys) + pad)
    ax.set_xlim(*ax.get_xlim())  # fixed from here: the labels are placed in display coordinates
    size_handles = [
        ax.scatter([], [], s=area(v), color="grey", alpha=0.4, edgecolors="black", label=_fmt_params(v))
        for v in size_legend_values([p.params for p in shown])
    ]
    legend = ax.legend(handles=size_handles, title="parameters", loc="lower right", labelspacing=1.6,
                       borderpad=1.1, frameon=True)
    ax.add_artist(legend)
    family_handles = [Line2D([], [], marker="o", ls="", color=colour[f], label=f) for f in families]
    # Outside the axes, to the right: inside it would cover the points of the top-left corner.
    ax.legend(handles=family_handles, title="family", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7,
              borderaxespad=0.0)
    fig.tight_layout()
    labels, moved = _draw_labels(fig, ax, shown, xs, ys, [area(p.params) for p in shown], legend)
    return BubbleFigure(fig, ax, shown, labels, moved)


def _draw_labels(fig, ax, shown: Sequence[Point], xs: Sequence[float], ys: Sequence[float],
                 sizes_pt2: Sequence[float], legend) -> tuple[list[Any], list[bool]]:
    """Name every circle; labels that had to move away from their circle get a thin grey leader
    line from the circle's edge."""
    style = {"ha": "center", "va": "center", "fontsize": 7}
    renderer = fig.canvas.get_renderer()
    px_per_pt = fig.dpi / 72.0
    centres = ax.transData.transform(np.column_stack([xs, ys]))
    radii = np.sqrt(np.asarray(sizes_pt2)) / 2 * px_per_pt + 0.3 * px_per_pt  # marker radius + half its edge
    sizes = []
    for p in shown:  # the size of each label, measured with the renderer that will draw it
        probe = ax.text(0, 0, p.name, **style)
        extent = probe.get_window_extent(renderer)
        sizes.append((extent.width, extent.height))
        probe.remove()
    frame = ax.get_window_extent(renderer)
    boxes, moved = place_labels(centres, radii, np.array(sizes), (frame.x0, frame.y0, frame.x1, frame.y1),
                                keep_out=[tuple(legend.get_window_extent(renderer).extents)])
    to_data = ax.transData.inverted()
    texts = []
    for p, box, centre, radius, away in zip(shown, boxes, centres, radii, moved):
        middle = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        texts.append(ax.text(*to_data.transform(middle), p.name, zorder=4, **style))
        if away:  # from the circle's edge to the nearest point of the label's box
            nearest = np.clip(centre, box[:2], box[2:])
            direction = (nearest - centre) / max(float(np.linalg.norm(nearest - centre)), 1e-9)
            ends = to_data.transform(np.stack([centre + direction * radius, nearest - direction * 1.0]))
            ax.plot(ends[:, 0], ends[:, 1], color="0.25", linewidth=0.6, zorder=3)
    return texts, [bool(m) for m in moved]


def bubble_chart(
    points: Sequence[Point],
    path: str | Path,
    *,
    x: str = "macs",
    title: str = "Top-1 accuracy vs operations (circle area ∝ parameters)",
    log_x: bool | None = None,
    formats: Sequence[str] = ("png", "svg"),
    y_label: str = "top-1 accuracy (%)",
) -> list[Path]:
    """Draw accuracy (y) against MACs or latency (``x="macs"|"latency"``), circle area ∝ params.
    ``y_label`` names the score (e.g. ``"test mIoU (%)"`` for segmentation).

    ``path`` is the file stem; one file per format is written (atomically). Returns the paths.
    Points without an accuracy are left out. No two labels overlap (:func:`draw_bubble_chart`).
    """
    import matplotlib

    drawn = draw_bubble_chart(points, x=x, title=title, log_x=log_x, y_label=y_label)
    written = []
    stem = Path(path)
    # SVG keeps its labels as text (searchable, selectable in the atlas), not as glyph paths.
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        for fmt in formats:
            out = stem.with_suffix(f".{fmt}")
            written.append(atomic_save(out, lambda tmp, fmt=fmt: drawn.figure.savefig(tmp, format=fmt)))
    return written

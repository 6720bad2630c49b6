"""Schedules over env frames that several methods share (a weight moved along fixed points)."""

from __future__ import annotations


def piecewise_linear(points: list[tuple[float, float]], x: float) -> float:
    """Linear interpolation between ``(x, y)`` points with increasing x; constant outside them."""
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]

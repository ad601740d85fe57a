"""A mask's outlines as polygons: the one definition the session and every server face use.

Outer boundaries only (OpenCV external contours, simple chain approximation), as (x, y) image
pixels. A contour of fewer than 3 points (a lone pixel, a one-pixel line) is dropped: it encloses
no area, and the tools that take polygons (Label Studio, X-AnyLabeling, CVAT) cannot draw it.
Such specks stay in the mask itself.
"""

from __future__ import annotations

import cv2
import numpy as np


def polygons(mask: np.ndarray, epsilon_factor: float = 0.0) -> list[np.ndarray]:
    """Outer boundaries of a bool [H, W] mask as int32 [N, 2] arrays of (x, y), N >= 3. A positive
    ``epsilon_factor`` simplifies each with Douglas-Peucker at that fraction of its perimeter, as
    X-AnyLabeling's SAM models do."""
    found, _ = cv2.findContours(np.asarray(mask).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    result = []
    for contour in found:
        if epsilon_factor > 0:
            contour = cv2.approxPolyDP(contour, epsilon_factor * cv2.arcLength(contour, True), True)
        points = contour.reshape(-1, 2)
        if len(points) >= 3:
            result.append(points.astype(np.int32))
    return result

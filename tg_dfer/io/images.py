"""Encoding and decoding of the face crops stored in faces.h5 (JPEG or PNG bytes, RGB)."""

from __future__ import annotations

import cv2
import numpy as np

IMAGE_FORMATS = ("jpeg", "png")


def encode_image(image: np.ndarray, image_format: str, jpeg_quality: int = 95) -> bytes:
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if image_format == "jpeg":
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    else:
        ok, data = cv2.imencode(".png", bgr)
    if not ok:
        raise ValueError(f"could not encode a crop as {image_format}")
    return data.tobytes()


def decode_image(data: bytes) -> np.ndarray:
    """An encoded crop back to (H, W, 3) uint8 RGB."""
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("undecodable crop bytes")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

"""From face crops and prompt texts to cached CLIP embeddings: images (features.h5) and text (the text h5)."""

from __future__ import annotations




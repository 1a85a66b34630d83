"""The feature cache of training, resident on its device or read from the file per batch, and
segment sampling of whole batches on the device."""

from __future__ import annotations

import numpy as np
import torch

from tg_dfer.io.features_h5 import FeatureCache, FeatureRows


class FeatureBank:
    """The feature cache for training, and the per-step frame sampling.

    Training picks one random frame per segment when a clip has more valid cached frames than the
    T the model sees, and a random view per clip; testing picks segment centres of view 0. The
    sampling is :func:`tg_dfer.sampling.segment_indices` done for a whole batch on ``device``.
    Features in memory (an array) are held on ``device`` as one tensor, so a step copies nothing
    between host and device; features left in the file (:class:`FeatureRows`) are read a batch's
    clips at a time, the same values, so the same steps.
    """

    def __init__(self, cache: FeatureCache, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.shape = tuple(cache.features.shape)  # (N, V, F, D)
        self.on_file = cache.features if isinstance(cache.features, FeatureRows) else None
        self.features = None if self.on_file is not None else torch.from_numpy(
            np.ascontiguousarray(cache.features)).to(self.device)  # (N, V, F, D) fp16
        self.num_frames = torch.from_numpy(cache.num_frames.astype(np.int64)).to(self.device)  # (N,)
        self.frame_index = torch.from_numpy(cache.frame_index.astype(np.int64)).to(self.device)  # (N, F)

    @classmethod
    def from_arrays(cls, features: np.ndarray, num_frames: np.ndarray | None = None,
                    frame_index: np.ndarray | None = None, device: str | torch.device = "cpu") -> "FeatureBank":
        """A bank of clips embedded elsewhere (e.g. new videos): ``features`` (N, V, F, D) or (N, F, D)."""
        features = np.asarray(features)
        if features.ndim == 3:
            features = features[:, None]
        N, _, F_, _ = features.shape
        cache = FeatureCache(
            clip_id=[str(i) for i in range(N)], label=np.full(N, -1, np.int64), features=features.astype(np.float16),
            num_frames=np.full(N, F_, np.int32) if num_frames is None else np.asarray(num_frames, np.int32),
            frame_index=np.tile(np.arange(F_, dtype=np.int32), (N, 1)) if frame_index is None else frame_index,
            face_score=np.ones((N, F_), np.float32), attrs={})
        return cls(cache, device)

    @property
    def views(self) -> int:
        return self.shape[1]

    def generator(self, seed: int) -> torch.Generator:
        """A seeded random generator on the bank's device, for :meth:`sample`."""
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed)
        return generator

    def sample(self, rows: torch.Tensor, frames: int, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x (B, T, D) float32, mask (B, T) bool, positions (B, T) in the cached frames), on the device.

        ``rows`` (B,) int64 on the device. ``generator`` given: training sampling (random frame per
        segment, random view); None: segment centres of view 0.
        """
        B = rows.shape[0]
        n = self.num_frames[rows].unsqueeze(1)  # (B, 1)
        k = torch.arange(frames, device=self.device)  # (T,)
        starts = (k * n + frames - 1) // frames  # (B, T) segment k: ceil(k n / T) .. ceil((k + 1) n / T) - 1
        ends = ((k + 1) * n + frames - 1) // frames
        if generator is None:
            picks = (starts + ends) // 2
            views = torch.zeros(B, dtype=torch.long, device=self.device)
        else:
            draw = torch.rand(B, frames, generator=generator, device=self.device)
            picks = torch.minimum(starts + (draw * (ends - starts)).long(), ends - 1)
            views = torch.randint(0, self.views, (B,), generator=generator, device=self.device)
        short = n < frames  # fewer frames than T: all of them, then the last one repeated as padding
        positions = torch.where(short, torch.minimum(k, n - 1), picks)  # (B, T)
        mask = ~short | (k < n)
        if self.on_file is None:
            x = self.features[rows[:, None], views[:, None], positions].float()  # (B, T, D)
        else:
            clips = torch.from_numpy(self.on_file.read(rows.cpu().numpy())).to(self.device)  # (B, V, F, D)
            x = clips[torch.arange(B, device=self.device)[:, None], views[:, None], positions].float()
        return x, mask, positions

    def batch(self, rows: np.ndarray, frames: int, generator: torch.Generator | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """:meth:`sample` for numpy ``rows``, with the source frame index (B, T) on the host, -1 on padding."""
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(self.device)
        x, mask, positions = self.sample(index, frames, generator)
        source = torch.where(mask, self.frame_index[index[:, None], positions], -1)
        return x, mask, source.cpu().numpy()

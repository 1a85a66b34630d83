"""Planted-signal caches: the burst and the confuser are where the masks say, and carry what they should."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.synthetic import planted_cache

# Small but with room for both runs (3 + 8 of 16 frames); low noise so directions are measurable.
CONFUSED = dict(num_clips=210, num_classes=7, frames=16, dim=64, signal_frames=3, strength=0.5, identity=0.3,
                noise=0.3, confuser=0.3, confuser_frames=8, short_clips=0.3, seed=3)


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of True in a 1-d mask."""
    found, start = [], None
    for t, on in enumerate(list(mask) + [False]):
        if on and start is None:
            start = t
        elif not on and start is not None:
            found.append((start, t - start))
            start = None
    return found


def residuals(planted, mask: np.ndarray) -> np.ndarray:
    """Per clip: mean feature of the ``mask`` frames minus that of its frames carrying nothing (N, D)."""
    x = planted.features.features[:, 0].astype(np.float64)  # (N, F, D)
    valid = np.arange(x.shape[1])[None, :] < planted.features.num_frames[:, None]
    plain = valid & ~planted.signal & ~planted.confuser

    def mean(frames: np.ndarray) -> np.ndarray:
        return (x * frames[..., None]).sum(axis=1) / frames.sum(axis=1, keepdims=True)

    return mean(mask) - mean(plain)


def test_burst_and_confuser_are_disjoint_contiguous_runs_inside_the_valid_frames():
    planted = planted_cache(**CONFUSED)
    labels, n = planted.features.label, planted.features.num_frames
    assert (n < 16).any() and n.min() >= 3 + 8  # short clips exist, and each still holds both runs
    for clip in range(len(labels)):
        burst, confuser = runs(planted.signal[clip]), runs(planted.confuser[clip])
        assert len(burst) == 1 and burst[0][1] == 3, burst
        assert len(confuser) == 1 and confuser[0][1] == 8, confuser
        assert not (planted.signal[clip] & planted.confuser[clip]).any()
        assert burst[0][0] + 3 <= n[clip] and confuser[0][0] + 8 <= n[clip]  # never in the padding
    assert ((planted.confuser_class >= 0) & (planted.confuser_class < 7)).all()
    assert (planted.confuser_class != labels).all()
    assert len(set(planted.confuser_class.tolist())) == 7
    # both orders occur: the pair of runs is drawn among all non-overlapping placements
    before = [runs(planted.signal[c])[0][0] < runs(planted.confuser[c])[0][0] for c in range(len(labels))]
    assert 0 < sum(before) < len(before)


def test_burst_frames_carry_the_label_and_confuser_frames_another_class_more_weakly():
    planted = planted_cache(**{**CONFUSED, "short_clips": 0.0})  # a clip of 11 frames has no plain frame
    labels = planted.features.label
    burst, confuser = residuals(planted, planted.signal), residuals(planted, planted.confuser)
    prototypes = np.stack([burst[labels == k].mean(axis=0) for k in range(7)])  # (C, D) from the bursts alone
    # L2 normalisation shrinks the shared face wherever a class is added: a part common to all classes
    prototypes -= prototypes.mean(axis=0)
    prototypes /= np.linalg.norm(prototypes, axis=1, keepdims=True)
    assert ((burst @ prototypes.T).argmax(axis=1) == labels).mean() > 0.95
    # the confuser run points at its own class, which is not the label
    assert ((confuser @ prototypes.T).argmax(axis=1) == planted.confuser_class).mean() > 0.95
    assert np.median(np.linalg.norm(confuser, axis=1)) < np.median(np.linalg.norm(burst, axis=1))


def test_scattered_signal_gets_scattered_confuser_frames_and_no_confuser_leaves_none():
    planted = planted_cache(**{**CONFUSED, "contiguous": False})
    assert (planted.signal.sum(axis=1) == 3).all() and (planted.confuser.sum(axis=1) == 8).all()
    assert not (planted.signal & planted.confuser).any()
    plain = planted_cache(**{**CONFUSED, "confuser": 0.0})
    assert not plain.confuser.any() and (plain.confuser_class == -1).all()
    assert all(len(runs(mask)) == 1 for mask in plain.signal)


def test_runs_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="do not fit in 10 frames"):
        planted_cache(**{**CONFUSED, "frames": 10})

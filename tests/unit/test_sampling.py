import numpy as np
import pytest

from tg_dfer.sampling import segment_indices, subsample


@pytest.mark.parametrize("n", [16, 17, 31, 100, 1000])
def test_centre_takes_one_frame_from_the_middle_of_each_segment(n):
    indices, valid = segment_indices(n, 16, "centre")
    assert valid == 16 and len(indices) == 16
    for k, index in enumerate(indices):
        first, end = np.ceil(k * n / 16), np.ceil((k + 1) * n / 16)
        assert first <= index < end
        assert abs(index - (first + end - 1) / 2) <= 0.5
    assert np.all(np.diff(indices) > 0)


@pytest.mark.parametrize("n", [1, 5, 15])
def test_short_clips_keep_every_frame_and_repeat_the_last(n):
    indices, valid = segment_indices(n, 16, "centre")
    assert valid == n
    assert list(indices[:n]) == list(range(n))
    assert set(indices[n:]) == {n - 1}


def test_random_sampling_stays_inside_segments_and_is_seeded():
    n = 50
    draws = [segment_indices(n, 8, "random", np.random.default_rng(seed))[0] for seed in range(200)]
    for indices in draws:
        for k, index in enumerate(indices):
            assert np.ceil(k * n / 8) <= index < np.ceil((k + 1) * n / 8)
    assert len({tuple(d) for d in draws}) > 100
    again = segment_indices(n, 8, "random", np.random.default_rng(3))[0]
    assert np.array_equal(again, draws[3])
    # Every frame of a segment can be drawn.
    assert {int(d[0]) for d in draws} == set(range(0, 7))


def test_random_sampling_when_frames_equal_segments_is_every_frame():
    indices, _ = segment_indices(16, 16, "random", np.random.default_rng(0))
    assert list(indices) == list(range(16))


@pytest.mark.parametrize("args", [(0, 16, "centre"), (10, 0, "centre"), (10, 4, "middle"), (10, 4, "random")])
def test_bad_arguments_are_refused(args):
    with pytest.raises(ValueError):
        segment_indices(*args)


def test_subsample_picks_segment_centres_of_stored_frames():
    assert list(subsample(32, 16)) == list(range(1, 32, 2))
    assert list(subsample(16, 16)) == list(range(16))

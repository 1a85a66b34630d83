"""`tg-dfer bench` runs every part at tiny sizes and writes its JSON (the numbers are not checked:
speed is measured by running the benchmark, never by a unit test)."""

import json
import threading

from click.testing import CliRunner

from pipeline.cli import main
from tg_dfer.parallel import ordered_map, per_thread, prefetch

TINY = ["--embed-clips", "1", "--frames", "2", "--batch-size", "2", "--train-clips", "4", "--loop-clips", "1",
        "--train-batch-size", "2", "--rounds", "2", "--decode-clips", "2", "--video-frames", "6", "--video-size", "64x48",
        "--device", "cpu"]


def test_bench_all_at_tiny_sizes_writes_its_json(tmp_path, one_thread):
    out = tmp_path / "results" / "bench.json"
    result = CliRunner().invoke(main, ["bench", "all", *TINY, "--json", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert set(saved) == {"hardware", "embed", "train", "decode"}
    assert saved["hardware"]["device"] == "cpu" and saved["hardware"]["torch"]
    assert saved["embed"]["images"] == 2 and saved["embed"]["bare_images_per_s"] > 0
    assert saved["embed"]["embed_fraction_of_bare"] > 0
    assert saved["train"]["clips"] == 4 and saved["train"]["cached_epoch_s"] > 0 and saved["train"]["loop_over_cached"] > 0
    assert saved["train"]["step_gflop"] > 0 and 0 < saved["train"]["share_of_matmul_rate"]
    assert saved["train"]["loop_gflop_per_clip"] > saved["train"]["step_gflop"] / 2 and saved["train"]["checkpointed_epoch_s"] > 0
    train = saved["train"]
    assert train["flop_ratio"] > 1 and 0 < train["loop_share_of_matmul_rate"]
    assert train["rounds"] == 2 and len(train["round_ratios"]) == 2 and len(train["round_matmul_gflop_per_s"]) == 2
    ratios = train["round_ratios"]  # rounded to 0.1; the whole ratio is a mediant of the rounds'
    assert min(ratios) - 0.05 <= train["loop_over_cached"] <= max(ratios) + 0.05 and train["round_cached_ms_per_clip"] > 0
    assert abs(train["matmul_gflop_per_s"] - sum(train["round_matmul_gflop_per_s"]) / 2) < 0.1
    assert (train["feature_storage"], train["other_storage"]) == ("file", "memory"), "the CPU trains from the file"
    assert train["other_epoch_s"] > 0 and train["other_held_mib"] >= 0
    assert saved["decode"]["sampled"] == 2 and saved["decode"]["decode_all_ms_per_clip"] > 0
    for part in ("embed:", "train:", "decode:", "hardware:"):
        assert part in result.output


def test_bench_refuses_bad_sizes_naming_the_option():
    result = CliRunner().invoke(main, ["bench", "decode", "--video-size", "64"])
    assert result.exit_code == 2 and "--video-size" in result.output and "WIDTHxHEIGHT" in result.output
    result = CliRunner().invoke(main, ["bench", "train", "--train-clips", "0"])
    assert result.exit_code == 2 and "--train-clips" in result.output
    result = CliRunner().invoke(main, ["bench", "train", "--rounds", "0"])
    assert result.exit_code == 2 and "--rounds" in result.output


def test_ordered_map_keeps_the_order_and_reraises_at_the_failing_item():
    def slow_first(n):
        if n == 3:
            raise ValueError("three")
        return n * n

    results = ordered_map(slow_first, range(6), workers=3)
    assert [next(results) for _ in range(3)] == [0, 1, 4]
    try:
        next(results)
    except ValueError as error:
        assert str(error) == "three"
    else:
        raise AssertionError("the failing item did not raise")
    assert list(ordered_map(lambda n: n + 1, range(5), workers=1)) == [1, 2, 3, 4, 5]


def test_per_thread_builds_one_object_per_thread():
    made = []

    def factory():
        made.append(threading.get_ident())
        return threading.get_ident()

    get = per_thread(factory)
    owners = list(ordered_map(lambda _: (get(), threading.get_ident()), range(20), workers=4))
    assert all(built_for == caller for built_for, caller in owners)  # each thread got its own object
    assert sorted(made) == sorted({caller for _, caller in owners})  # built once per thread


def test_prefetch_yields_everything_in_order_and_passes_errors_on():
    assert list(prefetch(iter(range(10)), 2)) == list(range(10))

    def broken():
        yield 1
        raise RuntimeError("reader failed")

    items = prefetch(broken(), 2)
    assert next(items) == 1
    try:
        next(items)
    except RuntimeError as error:
        assert "reader failed" in str(error)
    else:
        raise AssertionError("the error was not passed on")

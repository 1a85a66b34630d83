"""``tg-dfer bench train``: cached training steps against the image encoder in the loop, taken in
turn so that both see the same machine, their FLOPs against the device's matmul rate, and a cached
epoch's time and peak memory with and without activation checkpointing, with the cache held as the
train stage holds it on the device and the other way."""

from __future__ import annotations

import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.measure import best_time, current_rss_mib, elapsed, peak_rss_mib, reset_peak_rss, smooth_faces, synchroniser
from tg_dfer.backbone import BackboneSpec, encode_images, load_backbone, preprocess
from tg_dfer.io.features_h5 import FeaturesWriter


@dataclass
class TrainBench:
    clips: int  # clips in the cached epoch (e.g. DFEW's ~9,400 training clips)
    loop_clips: int  # clips of each round's epoch with the image encoder in the loop
    frames: int
    batch_size: int
    rounds: int  # rounds of ROUND_STEPS cached steps, then an epoch of loop_clips with the encoder in the loop
    cached_epoch_s: float  # the whole cached epoch, in a process of its own (the memory figures' run)
    cached_ms_per_clip: float  # cached_epoch_s per clip
    round_cached_ms_per_clip: float  # the rounds' cached steps per clip
    loop_ms_per_clip: float  # the rounds' epochs with the encoder in the loop per clip
    loop_over_cached: float  # loop_ms_per_clip / round_cached_ms_per_clip: how many times slower the loop is
    round_ratios: list  # the same ratio in each round: its spread is the machine's
    flop_ratio: float  # the loop's FLOPs per clip over the cached epoch's: loop_over_cached if both ran at one rate
    projected_5_folds_x_50_epochs_s: float  # cached_epoch_s x 250: training steps only, no per-epoch scoring
    step_gflop: float  # matmul FLOPs of one cached training step (forward and backward), counted
    loop_gflop_per_clip: float  # what the image encoder adds per clip in the loop (counted)
    step_gflop_per_s: float  # the cached steps' matmul FLOPs over their time
    matmul_gflop_per_s: float  # the device's rate on a large fp32 matmul, the mean of one measure per round
    round_matmul_gflop_per_s: list  # those measures: how much the machine's speed moved during the rounds
    share_of_matmul_rate: float  # step_gflop_per_s / matmul_gflop_per_s
    loop_share_of_matmul_rate: float  # the same for the epoch with the image encoder in the loop
    features_mib: float  # the synthetic features.h5
    feature_storage: str  # train.optim.feature_storage auto on this device (file on the CPU, memory on a GPU)
    cache_held_mib: float  # RSS increase once the cache is opened and held that way for training (before any step)
    peak_rss_mib: float  # from opening the cache on (Linux), or of the whole process
    rss_increase_mib: float  # that peak minus the RSS before the cache was opened
    peak_over_features: float  # rss_increase_mib / features_mib
    checkpointed_epoch_s: float  # the cached epoch with activation checkpointing (train.optim)
    checkpointed_rss_increase_mib: float
    checkpointed_peak_over_features: float
    other_storage: str  # the other way of holding the cache, measured without checkpointing
    other_epoch_s: float
    other_held_mib: float
    other_rss_increase_mib: float
    other_peak_over_features: float


def _synthetic_cache(path: Path, clips: int, frames: int, classes: int, dim: int, attrs: dict) -> None:
    """A features.h5 of unit random frame embeddings, generated in slices so that making it adds no peak memory."""
    rng = np.random.default_rng(0)
    with FeaturesWriter(path, 1, frames, dim, attrs) as writer:
        for start in range(0, clips, 512):
            block = rng.standard_normal((min(512, clips - start), 1, frames, dim), dtype=np.float32)
            block /= np.linalg.norm(block, axis=-1, keepdims=True)
            rows = range(start, start + len(block))
            writer.extend([f"c{row}" for row in rows], [row % classes for row in rows], block, [frames] * len(block),
                          [np.arange(frames)] * len(block), [np.ones(frames)] * len(block))


def counted_gflop(run: Callable[[], None]) -> float:
    """Matmul (and convolution) FLOPs of ``run``, forward and backward, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops() / 1e9


def matmul_rate(device: str, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of the device on one large fp32 matmul: the ceiling of what a training step can reach."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    seconds = best_time(lambda: torch.mm(a, b), repeats, synchroniser(device))
    return 2 * size ** 3 / seconds / 1e9


def _loop_epoch(loaded, model, config, clips: int, batch_size: int, classes: int,
                device: str) -> tuple[Callable[[], None], float]:
    """An epoch of ``clips`` clips with every frame through the frozen image tower at every step,
    then the same training step; and the tower's counted GFLOP per clip."""
    from tg_dfer.training.loop import parameter_groups

    T, D, S = model.config.num_frames, loaded.embed_dim, loaded.input_resolution
    rng = np.random.default_rng(0)
    pixels = preprocess(torch.from_numpy(smooth_faces(16, 160, rng)), S)  # a few distinct images, reused
    model.train()
    optimizer = torch.optim.SGD(parameter_groups(model, config), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    y = torch.from_numpy(np.arange(clips) % classes).to(device)
    mask = torch.ones(batch_size, T, dtype=torch.bool, device=device)
    batch_pixels = pixels[torch.arange(batch_size * T) % len(pixels)].to(device)  # (B * T, 3, S, S)

    def epoch() -> None:
        for start in range(0, clips, batch_size):
            rows = slice(start, min(start + batch_size, clips))
            B = rows.stop - rows.start
            x = encode_images(loaded, batch_pixels[: B * T]).reshape(B, T, D)  # frozen: no gradient
            loss = F.cross_entropy(model(x, mask[:B]).logits, y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    encoder_gflop = counted_gflop(lambda: encode_images(loaded, batch_pixels[:T])) if T else 0.0
    return epoch, encoder_gflop


# Cached steps per round of the interleaved measure: on the CPU about as long as a loop epoch of
# 8 clips, so that a change of the machine's speed falls on both alike.
ROUND_STEPS = 12


@dataclass
class Rounds:
    cached_s: list[float]
    loop_s: list[float]
    matmul_gflop_per_s: list[float]
    round_clips: int  # cached clips per round
    encoder_gflop: float  # per clip, counted


def _rounds(loaded, encoder, bank, labels: np.ndarray, classes: int, frames: int, batch_size: int, loop_clips: int,
            device: str, rounds: int) -> Rounds:
    """``rounds`` times in turn: the device's matmul rate, ROUND_STEPS cached training steps on
    ``bank`` (the next clips each round), an epoch of ``loop_clips`` clips with the encoder in the
    loop; after one untimed round."""
    from tg_dfer.training.loop import train_model

    clips = len(labels)
    round_clips = min(clips, ROUND_STEPS * batch_size)
    sync = synchroniser(device)
    cached_model = _bench_model(loaded, encoder, classes, frames, device)
    loop, encoder_gflop = _loop_epoch(loaded, _bench_model(loaded, encoder, classes, frames, device),
                                      _bench_optim(batch_size), loop_clips, batch_size, classes, device)
    result = Rounds([], [], [], round_clips, encoder_gflop)
    for number in range(rounds + 1):
        split = _train_only((np.arange(round_clips) + number * round_clips) % clips)
        rate = matmul_rate(device)
        cached = elapsed(lambda: train_model(cached_model, bank, labels, split, _bench_optim(batch_size),
                                             progress=False), sync)
        in_loop = elapsed(loop, sync)
        if number:  # the first round warms up
            result.cached_s.append(cached)
            result.loop_s.append(in_loop)
            result.matmul_gflop_per_s.append(rate)
    return result


def _bench_model(loaded, encoder, classes: int, frames: int, device: str):
    """The bench's default TG-DFER model, seeded: every process builds the same one."""
    from tg_dfer.model import ModelConfig, build_model

    D = loaded.embed_dim
    text = F.normalize(torch.randn(classes, D, generator=torch.Generator().manual_seed(0)), dim=-1)
    names = [f"class{k}" for k in range(classes)]
    config = ModelConfig(embed_dim=D, num_classes=classes, num_frames=frames, window=min(4, frames))
    return build_model(config, names, [f"an expression of {n}." for n in names], names, text, text,
                       encoder=encoder, seed=0).to(device)


def _train_only(rows: np.ndarray):
    """A split that trains on the cache's ``rows`` and holds none out."""
    from tg_dfer.training.splits import Split

    return Split(train=rows, val=np.zeros(0, np.int64), test=np.zeros(0, np.int64))


def _bench_optim(batch_size: int, checkpointing: bool = False):
    from tg_dfer.training.config import TrainConfig

    return TrainConfig(epochs=1, batch_size=batch_size, val_fraction=0.0, track_test=False,
                       activation_checkpointing=checkpointing)


def _epoch_in_own_process(path: str, storage: str, checkpointing: bool, device: str, classes: int, frames: int,
                          batch_size: int, repeats: int, threads: int) -> tuple[float, float, float, float]:
    """A cached training epoch as a ``tg-dfer train`` process runs it, in a process of its own: with
    the memory setting of its mode (tg_dfer.memory), which glibc cannot undo, and a peak of its own.
    Returns seconds, the RSS increase of holding the cache and the peak RSS increase, counted from
    just before the cache is opened, and the peak RSS."""
    from tg_dfer.io.features_h5 import FeatureRows, read_features
    from tg_dfer.memory import release_freed_memory
    from tg_dfer.model import TextEncoder
    from tg_dfer.training.bank import FeatureBank
    from tg_dfer.training.loop import train_model

    torch.set_num_threads(threads)
    if checkpointing:  # the memory-lean mode, as the train stage sets it
        release_freed_memory()
    loaded = load_backbone(BackboneSpec("ViT-B/32", "random"), device=device)
    encoder = TextEncoder.from_clip(loaded.model).to(device)
    reset_peak_rss()
    before = current_rss_mib()
    cache = read_features(path, frames_in_memory=storage == "memory")
    bank = FeatureBank(cache, device)
    held = current_rss_mib() - before
    model = _bench_model(loaded, encoder, classes, frames, device)
    reset_peak_rss()
    split = _train_only(np.arange(len(cache.clip_id)))
    seconds = best_time(lambda: train_model(model, bank, cache.label.astype(np.int64), split,
                                            _bench_optim(batch_size, checkpointing), progress=False),
                        repeats, synchroniser(device))
    peak = peak_rss_mib()
    if isinstance(cache.features, FeatureRows):
        cache.features.close()
    return seconds, held, peak - before, peak


def bench_train(device: str = "cpu", clips: int = 9400, loop_clips: int = 8, frames: int = 16, classes: int = 7,
                batch_size: int = 48, repeats: int = 1, rounds: int = 4) -> TrainBench:
    """Training of the default TG-DFER model on a cache of ``clips`` clips against the image encoder
    in the loop, per clip, measured in ``rounds`` rounds that take each in turn (the ratio then
    holds when the machine's speed moves); its FLOPs against the device's matmul rate; a whole
    cached epoch's time and peak memory, and again with activation checkpointing, with the cache
    held as ``feature_storage: auto`` holds it on ``device``; then one epoch with it held the other
    way (in memory / in the file). Each whole epoch runs in a fresh process with the train stage's
    memory setting (tg_dfer.memory); the rounds run here, with the plain epoch's."""
    from tg_dfer.io.features_h5 import FeatureRows, read_features
    from tg_dfer.model import TextEncoder
    from tg_dfer.training.bank import FeatureBank
    from tg_dfer.training.loop import train_model

    loaded = load_backbone(BackboneSpec("ViT-B/32", "random"), device=device)
    encoder = TextEncoder.from_clip(loaded.model).to(device)
    names = [f"class{k}" for k in range(classes)]
    storage = "memory" if _bench_optim(batch_size).features_in_memory(device) else "file"
    other = "file" if storage == "memory" else "memory"
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no memory setting or heap inherited
    with tempfile.TemporaryDirectory(prefix="tg-dfer-bench-") as folder:
        path = Path(folder) / "features.h5"
        attrs = {**loaded.attrs(), "class_names": names, "views": 1, "frames_per_clip": frames}
        _synthetic_cache(path, clips, frames, classes, loaded.embed_dim, attrs)
        features_mib = path.stat().st_size / (1 << 20)
        runs = {}
        for kind, checkpointing in ((storage, False), (storage, True), (other, False)):
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                runs[kind, checkpointing] = pool.submit(
                    _epoch_in_own_process, str(path), kind, checkpointing, device, classes, frames, batch_size,
                    repeats, torch.get_num_threads()).result()
        cache = read_features(path, frames_in_memory=storage == "memory")
        bank, labels = FeatureBank(cache, device), cache.label.astype(np.int64)
        step_gflop = counted_gflop(lambda: train_model(
            _bench_model(loaded, encoder, classes, frames, device), bank, labels,
            _train_only(np.arange(min(batch_size, clips))), _bench_optim(batch_size), progress=False))
        measured = _rounds(loaded, encoder, bank, labels, classes, frames, batch_size, loop_clips, device, rounds)
        if isinstance(cache.features, FeatureRows):
            cache.features.close()

    cached, held, peak, peak_rss = runs[storage, False]
    step_gflop_per_clip = step_gflop / min(batch_size, clips)
    loop_gflop = measured.encoder_gflop + step_gflop_per_clip  # per clip: the encoder, then the same training step
    round_cached = [seconds / measured.round_clips for seconds in measured.cached_s]  # per clip
    round_loop = [seconds / loop_clips for seconds in measured.loop_s]
    cached_per_clip, loop_per_clip = sum(round_cached) / rounds, sum(round_loop) / rounds
    rate = sum(measured.matmul_gflop_per_s) / rounds
    achieved = step_gflop_per_clip / cached_per_clip
    return TrainBench(clips=clips, loop_clips=loop_clips, frames=frames, batch_size=batch_size, rounds=rounds,
                      cached_epoch_s=cached, cached_ms_per_clip=1e3 * cached / clips,
                      round_cached_ms_per_clip=1e3 * cached_per_clip, loop_ms_per_clip=1e3 * loop_per_clip,
                      loop_over_cached=loop_per_clip / cached_per_clip,
                      round_ratios=[round(l / c, 1) for l, c in zip(round_loop, round_cached)],
                      flop_ratio=loop_gflop / step_gflop_per_clip,
                      projected_5_folds_x_50_epochs_s=250 * cached,
                      step_gflop=step_gflop, loop_gflop_per_clip=measured.encoder_gflop, step_gflop_per_s=achieved,
                      matmul_gflop_per_s=rate, round_matmul_gflop_per_s=[round(r, 1) for r in measured.matmul_gflop_per_s],
                      share_of_matmul_rate=achieved / rate,
                      loop_share_of_matmul_rate=loop_gflop / loop_per_clip / rate, features_mib=features_mib,
                      feature_storage=storage, cache_held_mib=held, peak_rss_mib=peak_rss,
                      rss_increase_mib=peak, peak_over_features=peak / features_mib,
                      checkpointed_epoch_s=runs[storage, True][0], checkpointed_rss_increase_mib=runs[storage, True][2],
                      checkpointed_peak_over_features=runs[storage, True][2] / features_mib, other_storage=other,
                      other_epoch_s=runs[other, False][0], other_held_mib=runs[other, False][1],
                      other_rss_increase_mib=runs[other, False][2],
                      other_peak_over_features=runs[other, False][2] / features_mib)

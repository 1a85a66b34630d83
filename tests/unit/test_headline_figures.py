"""The figures the README and the docs quote are the committed files' figures (issue 29).

Each entry names a doc, a regular expression over its text and, for every group of the
expression, where that figure comes from: a key in a committed JSON file (or a figure in a
committed report), formatted as the doc writes it. The doc's text is matched with its whitespace
collapsed, so a figure may wrap across lines; every match must agree, and a phrase the doc no
longer has fails too (reword the entry with the doc). Figures of earlier runs come from the file
as an earlier commit holds it (``git show COMMIT:PATH``); those skip, with the reason, where git
or that commit is missing (an archive, a shallow clone). Reads only markdown and JSON: no torch.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pytest

from helpers import REPO

METRICS = "metrics/demo/metrics.json"
SEEDS = "metrics/demo/seeds.json"
CLAIMS = "metrics/demo/claims.json"  # benchmarks/demo_claims.py --json
FACES = "metrics/demo/faces.json"
BACKBONE = "metrics/demo/backbone.json"
REPORT = "report/demo/ablations.md"

# Commits whose committed demo files earlier figures quote (docs/reference-run.md, "Earlier runs").
RANDOM_WEIGHTS = "7af5810"  # 2026-11-23: random ViT-B/32 weights, UAR 15.71
FACES_FIRST = "a1e2c05"  # 2026-11-23: faces.json with 135 ok, 5 partial
TOPK_QUARTER = "4b94e73"  # 2026-12-02: the first shipped backbone, top-k over 25 % of the frames
TOPK_EIGHTH = "469e503"  # 2026-12-02: the same backbone, top-k over 12.5 % (2 of 16)
UNCOLLAPSED = "d4e3e8c"  # 2026-12-02: the backbone out of its collapsed start
CONFUSER = "3711e95"  # 2026-12-02: the demo clips with a confuser, 3 mean-pooled epochs


class NotAvailable(Exception):
    """The source needs git history this checkout lacks."""


@lru_cache(maxsize=None)
def committed_text(path: str, commit: str | None) -> str:
    if commit is None:
        return (REPO / path).read_text()
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        raise NotAvailable(f"{path} as of {commit}: no git checkout")
    shown = subprocess.run([git, "-C", str(REPO), "show", f"{commit}:{path}"], capture_output=True, text=True)
    if shown.returncode:
        raise NotAvailable(f"{path} as of {commit}: not in this clone's history ({shown.stderr.strip()})")
    return shown.stdout


def lookup(data: Any, key: str) -> Any:
    """``a.b.0.c``; a ``*`` part takes every value at that level (a list)."""
    parts = key.split(".")
    for index, part in enumerate(parts):
        if part == "*":
            values = data.values() if isinstance(data, dict) else data
            rest = ".".join(parts[index + 1:])
            return [lookup(value, rest) if rest else value for value in values]
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


@dataclass(frozen=True)
class Json:
    """A number in a committed JSON file, as the doc writes it."""

    path: str
    key: str
    fmt: str = ".1f"
    scale: float = 1.0  # 100 for a fraction quoted in percent, 1 / 3600 for seconds quoted in hours
    reduce: Callable[[list], float] | None = None  # for a ``*`` key: min, max
    commit: str | None = None  # None: the working tree's file

    def text(self) -> str:
        value = lookup(json.loads(committed_text(self.path, self.commit)), self.key)
        if self.reduce is not None:
            value = self.reduce(value)
        return format(value * self.scale if self.scale != 1 else value, self.fmt)

    def __str__(self) -> str:
        return f"{self.path}{'@' + self.commit if self.commit else ''}:{self.key}"


@dataclass(frozen=True)
class Quoted:
    """A number in a committed text file (the ablation report), found by its own expression."""

    path: str
    pattern: str
    fmt: str = ".1f"

    def text(self) -> str:
        found = re.search(self.pattern, collapse(committed_text(self.path, None)))
        assert found, f"{self.path} no longer has {self.pattern!r}"
        return format(float(found.group(1)), self.fmt)

    def __str__(self) -> str:
        return f"{self.path}:{self.pattern}"


@dataclass(frozen=True)
class Figures:
    doc: str
    pattern: str  # one group per source
    sources: tuple[Json | Quoted, ...]


def collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text)


N = r"([\d,]+(?:\.\d+)?)"  # one figure: 97.7, 0.976, 1,528

FIGURES = [
    # --- README: what the demo shows (seed study and the committed seed 0) ---
    Figures("README.md", rf"renders 40 clips per class \({N} clips",
            (Json(METRICS, "clips", "d"),)),
    Figures("README.md", rf"renders 40 clips per class \({N} clips",
            (Json(FACES, "clips", "d"),)),
    Figures("README.md", rf"\*\*{N} % ± {N}\*\* over 5 seeds \(every seed {N}-{N}; WAR the same\)",
            (Json(SEEDS, "mean.uar"), Json(SEEDS, "std.uar"),
             Json(SEEDS, "seeds.*.uar", reduce=min), Json(SEEDS, "seeds.*.uar", reduce=max))),
    Figures("README.md", rf"\*\*{N} % ± {N}\*\* over 5 seeds \(every seed {N}-{N}; WAR the same\)",
            (Json(SEEDS, "mean.war"), Json(SEEDS, "std.war"),
             Json(SEEDS, "seeds.*.war", reduce=min), Json(SEEDS, "seeds.*.war", reduce=max))),
    Figures("README.md", rf"the committed seed 0: {N} % ± {N} over folds",
            (Json(METRICS, "uar"), Json(METRICS, "uar_std"))),
    Figures("README.md", rf"mean per-clip AUROC \*\*{N} ± {N}\*\* over 5 seeds \(every seed {N} or more\), "
                         rf"over the {N} non-neutral clips; seed 0: {N}",
            (Json(SEEDS, "mean.apex_auroc", ".3f"), Json(SEEDS, "std.apex_auroc", ".3f"),
             Json(SEEDS, "min.apex_auroc", ".3f"), Json(METRICS, "apex_auroc.clips", "d"),
             Json(METRICS, "apex_auroc.mean", ".3f"))),
    Figures("README.md", rf"the seeds themselves span {N}-{N}\)",
            (Json(SEEDS, "seeds.*.uar", reduce=min), Json(SEEDS, "seeds.*.uar", reduce=max))),
    Figures("README.md", rf"against {N} % \({N}\): worse",
            (Json(METRICS, "uar"), Json(METRICS, "apex_auroc.mean", ".3f"))),
    # --- README: the committed seed 0's claims (benchmarks/demo_claims.py) ---
    Figures("README.md", rf"k = 1: {N} vs {N}; k = 2: {N} vs {N}; k = 3: {N} vs {N} \(UAR %\)",
            tuple(Json(CLAIMS, f"table6.{side}_{k}.uar") for k in (1, 2, 3) for side in ("highest", "lowest"))),
    Figures("README.md", rf"\*\*{N} % ± {N}\*\* \(apex AUROC {N}\) against",
            (Json(CLAIMS, "mil_mean.uar"), Json(CLAIMS, "mil_mean.uar_std"),
             Json(CLAIMS, "mil_mean.apex_auroc.mean", ".3f"))),
    Figures("README.md", rf"\| {N} % ± {N} \(chance 14\.3 %\); training adds",
            (Json(CLAIMS, "zero_shot.uar"), Json(CLAIMS, "zero_shot.uar_std"))),
    Figures("README.md", rf"demo_claims\.py --json metrics/demo/claims\.json`, {N} s\)",
            (Json(CLAIMS, "seconds", ".0f"),)),
    Figures("README.md", rf"reaches {N} % \(metrics/demo/backbone\.json\)",
            (Json(BACKBONE, "held_out.zero_shot_class_prompts"),)),
    # --- README: earlier demos, as committed then ---
    Figures("README.md", rf"The backbone shipped before 2026-12-02 reached {N} % there and the demo {N} %",
            (Json(BACKBONE, "held_out.zero_shot_class_prompts", commit=TOPK_EIGHTH),
             Json(METRICS, "uar", commit=TOPK_EIGHTH))),
    Figures("README.md", rf"mean pooling did as well as top-k \([\d.]+ % against {N} %\)",
            (Json(METRICS, "uar", commit=UNCOLLAPSED),)),
    # --- docs/reference-run.md ---
    Figures("docs/reference-run.md",
            rf"\*\*40 clips per class, bit-exact rendering \(committed\)\*\* \| \*\*{N} ± {N}\*\* \({N}, {N}, {N}, {N}, {N}\) \| "
            rf">= {N} \| "
            rf"\*\*{N} ± {N}\*\* \({N}, {N}, {N}, {N}, {N}\) \| >= {N} \|",
            (Json(SEEDS, "mean.uar"), Json(SEEDS, "std.uar"),
             *(Json(SEEDS, f"seeds.{seed}.uar") for seed in range(5)), Json(SEEDS, "min.uar"),
             Json(SEEDS, "mean.apex_auroc", ".3f"), Json(SEEDS, "std.apex_auroc", ".3f"),
             *(Json(SEEDS, f"seeds.{seed}.apex_auroc", ".3f") for seed in range(5)),
             Json(SEEDS, "min.apex_auroc", ".3f"))),
    Figures("docs/reference-run.md", rf"and the seed study {N} s \(",
            (Json(SEEDS, "seconds", ".0f"),)),
    Figures("docs/reference-run.md",
            rf"seed 0: UAR {N} ± {N}, WAR {N} ± {N}, apex AUROC {N}, {N} clips\) and faces\.json {N} of {N} clips ok, "
            rf"{N} partial",
            (Json(METRICS, "uar", ".2f"), Json(METRICS, "uar_std", ".2f"), Json(METRICS, "war", ".2f"),
             Json(METRICS, "war_std", ".2f"), Json(METRICS, "apex_auroc.mean", ".3f"), Json(METRICS, "clips", "d"),
             Json(FACES, "ok", "d"), Json(FACES, "clips", "d"), Json(FACES, "partial", "d"))),
    Figures("docs/reference-run.md",
            rf"committed at the time \(UAR {N} ± {N}, WAR {N} ± {N} over 5 folds, as committed in {RANDOM_WEIGHTS};",
            tuple(Json(METRICS, key, ".2f", commit=RANDOM_WEIGHTS) for key in ("uar", "uar_std", "war", "war_std"))),
    Figures("docs/reference-run.md", rf"\({N} clips: {N} ok, {N} partial, as committed in {FACES_FIRST}\)",
            tuple(Json(FACES, key, "d", commit=FACES_FIRST) for key in ("clips", "ok", "partial"))),
    Figures("docs/reference-run.md", rf"the metrics\.json of {TOPK_EIGHTH}: UAR {N} ± {N}, apex AUROC {N}\)",
            (Json(METRICS, "uar", ".2f", commit=TOPK_EIGHTH), Json(METRICS, "uar_std", ".2f", commit=TOPK_EIGHTH),
             Json(METRICS, "apex_auroc.mean", ".3f", commit=TOPK_EIGHTH))),
    Figures("docs/reference-run.md", rf"gives UAR \*\*{N} ± {N}\*\*, apex AUROC {N}, faces {N} ok / {N} partial",
            (Json(METRICS, "uar", ".2f", commit=UNCOLLAPSED), Json(METRICS, "uar_std", ".2f", commit=UNCOLLAPSED),
             Json(METRICS, "apex_auroc.mean", ".3f", commit=UNCOLLAPSED), Json(FACES, "ok", "d", commit=UNCOLLAPSED),
             Json(FACES, "partial", "d", commit=UNCOLLAPSED))),
    Figures("docs/reference-run.md", rf"{CONFUSER}\): UAR \*\*{N} ± {N}\*\*, apex AUROC {N}, faces {N} ok",
            (Json(METRICS, "uar", ".2f", commit=CONFUSER), Json(METRICS, "uar_std", ".2f", commit=CONFUSER),
             Json(METRICS, "apex_auroc.mean", ".3f", commit=CONFUSER), Json(FACES, "ok", "d", commit=CONFUSER))),
    # --- docs/ablations.md: the example report is the 20-clip demo's ---
    Figures("docs/ablations.md", rf"its baseline \({N}\) is not today's \({N}, or {N} ± {N} over seeds\)",
            (Quoted(REPORT, r"All frames \(the baseline `main`\): UAR ([\d.]+) ±"), Json(METRICS, "uar"),
             Json(SEEDS, "mean.uar"), Json(SEEDS, "std.uar"))),
    Figures("docs/ablations.md", rf"its baseline \({N}\) is not today's",
            (Json(METRICS, "uar", commit=CONFUSER),)),
    # --- top-k over 25 % against 12.5 % of the frames on the demo (four docs, one pair of runs) ---
    Figures("docs/paper-deviations.md",
            rf"UAR {N} \+- {N} % at 0\.25, {N} \+- {N} % at 0\.125, apex AUROC {N} -> {N} "
            rf"\(`metrics/demo/metrics\.json` as committed in {TOPK_QUARTER} and in {TOPK_EIGHTH}\)",
            (Json(METRICS, "uar", commit=TOPK_QUARTER), Json(METRICS, "uar_std", commit=TOPK_QUARTER),
             Json(METRICS, "uar", commit=TOPK_EIGHTH), Json(METRICS, "uar_std", commit=TOPK_EIGHTH),
             Json(METRICS, "apex_auroc.mean", ".3f", commit=TOPK_QUARTER),
             Json(METRICS, "apex_auroc.mean", ".3f", commit=TOPK_EIGHTH))),
    Figures("docs/model.md", rf"with the backbone shipped until that day, UAR {N} -> {N} %",
            (Json(METRICS, "uar", commit=TOPK_QUARTER), Json(METRICS, "uar", commit=TOPK_EIGHTH))),
    Figures("docs/demo-backbone.md", rf"\| {N} % \| {N} % \({N} % with top-k 0\.25,",
            (Json(BACKBONE, "held_out.zero_shot_class_prompts", commit=TOPK_EIGHTH),
             Json(METRICS, "uar", commit=TOPK_EIGHTH), Json(METRICS, "uar", commit=TOPK_QUARTER))),
    # --- the warm-up of the pooling and mean pooling on the demo ---
    Figures("docs/paper-deviations.md",
            rf"UAR [\d.]+ \+- [\d.]+ -> \*\*{N} \+- {N} %\*\*, apex AUROC [\d.]+ -> \*\*{N}\*\*",
            (Json(METRICS, "uar", commit=CONFUSER), Json(METRICS, "uar_std", commit=CONFUSER),
             Json(METRICS, "apex_auroc.mean", ".3f", commit=CONFUSER))),
    Figures("docs/model.md", rf"UAR {N} % ± {N} and apex AUROC {N} with 3,",
            (Json(METRICS, "uar", commit=CONFUSER), Json(METRICS, "uar_std", commit=CONFUSER),
             Json(METRICS, "apex_auroc.mean", ".3f", commit=CONFUSER))),
    Figures("docs/model.md", rf"against {N} % ± {N} on the 20-clip demo \(2026-12-02, the README of {CONFUSER}\)",
            (Json(METRICS, "uar", commit=CONFUSER), Json(METRICS, "uar_std", commit=CONFUSER))),
    Figures("docs/model.md", rf"against {N} % ± {N} on the 40-clip demo of 2026-12-07",
            (Json(METRICS, "uar"), Json(METRICS, "uar_std"))),
    # --- docs/demo-backbone.md: the committed backbone and what the demo gets on it ---
    Figures("docs/demo-backbone.md",
            rf"\| 0 \(loss {N} in epoch 1\) \| {N} % after epoch 1, {N} % after 4, \*\*{N} %\*\* after 10 \| "
            rf"\*\*{N} %\*\* \({N} % on the demo clips with their confuser, since 2026-12-02; "
            rf"{N} % ± {N} over 5 training seeds",
            (Json(BACKBONE, "history.0.loss", ".2f"), Json(BACKBONE, "history.0.held_out.zero_shot_class_prompts"),
             Json(BACKBONE, "history.3.held_out.zero_shot_class_prompts"),
             Json(BACKBONE, "held_out.zero_shot_class_prompts"), Json(METRICS, "uar", commit=UNCOLLAPSED),
             Json(METRICS, "uar", commit=CONFUSER), Json(SEEDS, "mean.uar"), Json(SEEDS, "std.uar"))),
]

CPU = "metrics/bench-cpu.json"
TRAIN = "metrics/bench-cpu-train.json"
TRAIN2, TRAIN3, TRAIN4, TRAIN5, TRAIN6 = (f"metrics/bench-cpu-train-{n}.json" for n in range(2, 7))
PROFILE = "metrics/bench-cpu-profile.json"
B = "docs/benchmarks.md"
HOURS = 1 / 3600


def bench(path: str, *specs: tuple[str, str] | tuple[str, str, float]) -> tuple[Json, ...]:
    return tuple(Json(path, key, fmt, *scale) for key, fmt, *scale in specs)


FIGURES += [
    # --- docs/benchmarks.md: CPU, 2026-11-30 (metrics/bench-cpu.json) ---
    Figures(B, rf"embed path {N} images/s \| bare forward {N} images/s \| embed = \*\*{N}% of bare\*\*",
            bench(CPU, ("embed.embed_images_per_s", ".1f"), ("embed.bare_images_per_s", ".1f"),
                  ("embed.embed_fraction_of_bare", ".0f", 100))),
    Figures(B, rf"cached epoch {N} s \({N} ms/clip\) \| image encoder in the loop {N} ms/clip \| "
               rf"loop is \*\*{N}x slower\*\*",
            bench(CPU, ("train.cached_epoch_s", ".1f"), ("train.cached_ms_per_clip", ".1f"),
                  ("train.loop_ms_per_clip", ".0f"), ("train.loop_over_cached", ".0f"))),
    Figures(B, rf"one pass {N} ms/clip \| decode all {N} ms/clip \| decode-all \*\*{N}x slower\*\*; "
               rf"2 threads over clips {N}x faster",
            bench(CPU, ("decode.one_pass_ms_per_clip", ".0f"), ("decode.decode_all_ms_per_clip", ".0f"),
                  ("decode.decode_all_over_one_pass", ".1f"), ("decode.parallel_speedup", ".1f"))),
    Figures(B, rf"the synthetic features\.h5 is {N} MiB; reading it and holding it for training adds {N} MiB of RSS",
            bench(CPU, ("train.features_mib", ".0f"), ("train.cache_held_mib", ".0f"))),
    Figures(B, rf"training included, is \+{N} MiB \({N} MiB for the whole process",
            bench(CPU, ("train.rss_increase_mib", ".0f"), ("train.peak_rss_mib", ",.0f"))),
    Figures(B, rf"would take about {N} h \(x250 projection",
            bench(CPU, ("train.projected_5_folds_x_50_epochs_s", ".1f", HOURS))),
    # --- cached training, 2026-12-02 (metrics/bench-cpu-train.json) ---
    Figures(B, rf"\| cached epoch, 9,400 clips \| {N} s = {N} ms/clip \(x250: {N} h for 5 folds x 50 epochs\) \| - \| "
               rf"\| image encoder in the loop \| {N} ms/clip \| - \| \| loop / cached, per clip \| \*\*{N}x\*\* \|",
            bench(TRAIN, ("train.cached_epoch_s", ".1f"), ("train.cached_ms_per_clip", ".1f"),
                  ("train.projected_5_folds_x_50_epochs_s", ".1f", HOURS), ("train.loop_ms_per_clip", ".0f"),
                  ("train.loop_over_cached", ".0f"))),
    Figures(B, rf"counted \| {N} GFLOP; the encoder adds {N} GFLOP per clip \| - \| "
               rf"\| cached steps' rate \| {N} GFLOP/s = "
               rf"\*\*{N} %\*\* of the machine's fp32 matmul rate \({N} GFLOP/s, same run\)",
            bench(TRAIN, ("train.step_gflop", ".1f"), ("train.loop_gflop_per_clip", ".0f"),
                  ("train.step_gflop_per_s", ".0f"), ("train.share_of_matmul_rate", ".0f", 100),
                  ("train.matmul_gflop_per_s", ".0f"))),
    Figures(B, rf"\| features\.h5 / holding it \| {N} MiB / \+{N} MiB \| - \| \| peak RSS from reading the cache on \| "
               rf"\+{N} MiB = \*\*{N}x\*\* the file .*? \| the same with activation checkpointing \| "
               rf"\+{N} MiB = \*\*{N}x\*\*, epoch {N} s",
            bench(TRAIN, ("train.features_mib", ".0f"), ("train.cache_held_mib", ".0f"),
                  ("train.rss_increase_mib", ".0f"),
                  ("train.peak_over_features", ".2f"), ("train.checkpointed_rss_increase_mib", ".0f"),
                  ("train.checkpointed_peak_over_features", ".2f"), ("train.checkpointed_epoch_s", ".0f"))),
    Figures(B, rf"with activation checkpointing \*\*\+{N} MiB = {N}x\*\* the file \(2\.90x before the pieces\), "
               rf"its epoch {N} s against {N} s plain \(157 s before the pieces\); plain \+{N} MiB = {N}x; "
               rf"loop / cached {N}x; {N} % of a {N} "
               rf"GFLOP/s matmul rate",
            bench(TRAIN2, ("train.checkpointed_rss_increase_mib", ".0f"),
                  ("train.checkpointed_peak_over_features", ".2f"), ("train.checkpointed_epoch_s", ".1f"),
                  ("train.cached_epoch_s", ".1f"), ("train.rss_increase_mib", ".0f"),
                  ("train.peak_over_features", ".2f"), ("train.loop_over_cached", ".0f"),
                  ("train.share_of_matmul_rate", ".0f", 100), ("train.matmul_gflop_per_s", ".0f"))),
]


def bench_table(path: str, lead: str) -> list[Figures]:
    """The figures the tables of bench-cpu-train-3 to -6 share, each table found after its own lead-in."""
    return [
        Figures(B, rf"{lead}.*?cache read from the file \| {N} s = {N} ms/clip",
                bench(path, ("train.cached_epoch_s", ".1f"), ("train.cached_ms_per_clip", ".1f"))),
        Figures(B, rf"{lead}.*?\| image encoder in the loop(?:, in the rounds)? \| {N} ms/clip \|",
                bench(path, ("train.loop_ms_per_clip", ",.0f"))),
        Figures(B, rf"{lead}.*?\| loop / cached, per clip \| \*\*{N}x\*\*",
                bench(path, ("train.loop_over_cached", ".0f"))),
        Figures(B, rf"{lead}.*?\| peak RSS from opening the cache on, plain \| \+{N} MiB = (?:\*\*)?{N}x",
                bench(path, ("train.rss_increase_mib", ".0f"), ("train.peak_over_features", ".2f"))),
        Figures(B, rf"{lead}.*?\| the same with activation checkpointing(?: \(threshold fixed\))? \| "
                   rf"\+{N} MiB = \*\*{N}x\*\*, "
                   rf"epoch {N} s",
                bench(path, ("train.checkpointed_rss_increase_mib", ".0f"),
                      ("train.checkpointed_peak_over_features", ".2f"),
                      ("train.checkpointed_epoch_s", ".1f"))),
        Figures(B, rf"{lead}.*?\| cache held in memory instead(?: \(the earlier way\))?, plain \| "
                   rf"held \+{N} MiB, peak \+{N} MiB "
                   rf"= {N}x, epoch {N} s",
                bench(path, ("train.other_held_mib", ".0f"), ("train.other_rss_increase_mib", ".0f"),
                      ("train.other_peak_over_features", ".2f"), ("train.other_epoch_s", ".1f"))),
    ]


FIGURES += [
    *bench_table(TRAIN3, r"--json metrics/bench-cpu-train-3\.json"),
    *bench_table(TRAIN4, r"--json metrics/bench-cpu-train-4\.json"),
    *bench_table(TRAIN5, r"--json metrics/bench-cpu-train-5\.json"),
    *bench_table(TRAIN6, r"--json metrics/bench-cpu-train-6\.json"),
    Figures(B, rf"\| FLOPs per clip, loop / cached \(`flop_ratio`: the ratio if both ran at one rate\) \| {N}x \|",
            bench(TRAIN3, ("train.flop_ratio", ".0f"))),
    Figures(B, rf"\| one cached step \(48 clips\), counted \| {N} GFLOP at {N} GFLOP/s = "
               rf"\*\*{N} %\*\* of the matmul rate "
               rf"\({N} GFLOP/s, same run\); the loop reaches {N} %",
            bench(TRAIN3, ("train.step_gflop", ".1f"), ("train.step_gflop_per_s", ".1f"),
                  ("train.share_of_matmul_rate", ".0f", 100), ("train.matmul_gflop_per_s", ".0f"),
                  ("train.loop_share_of_matmul_rate", ".0f", 100))),
    Figures(B, rf"\| features\.h5 / holding it for training \| {N} MiB / \+{N} MiB \(file\)",
            bench(TRAIN3, ("train.features_mib", ".0f"), ("train.cache_held_mib", ".0f"))),
    *(Figures(B, rf"--json metrics/bench-cpu-train-{number}\.json.*?\| one cached step \(48 clips\) \| "
                 rf"{N} GFLOP at {N} GFLOP/s = "
                 rf"{bold}{N} %{bold} of the matmul rate \({N} GFLOP/s, same run\); the loop reaches {N} %",
              bench(source, ("train.step_gflop", ".1f"), ("train.step_gflop_per_s", ".0f"),
                    ("train.share_of_matmul_rate", ".0f", 100), ("train.matmul_gflop_per_s", ".0f"),
                    ("train.loop_share_of_matmul_rate", ".0f", 100)))
      for number, source, bold in ((4, TRAIN4, r"\*\*"), (5, TRAIN5, ""))),
    Figures(B, rf"\| cached steps in the rounds \| {N} ms/clip \|",
            bench(TRAIN6, ("train.round_cached_ms_per_clip", ".1f"))),
    Figures(B, rf"\(rounds: {N}x, {N}x, {N}x, {N}x; FLOP ratio {N}x\)",
            (*(Json(TRAIN6, f"train.round_ratios.{i}", ".0f") for i in range(4)),
             Json(TRAIN6, "train.flop_ratio", ".0f"))),
    Figures(B, rf"\| matmul rate, one per round \| {N}, {N}, {N}, {N} GFLOP/s \(mean {N}\)",
            (*(Json(TRAIN6, f"train.round_matmul_gflop_per_s.{i}", ".0f") for i in range(4)),
             Json(TRAIN6, "train.matmul_gflop_per_s", ".0f"))),
    Figures(B, rf"\| {N} GFLOP at {N} GFLOP/s = {N} % of the mean rate; the loop reaches {N} %",
            bench(TRAIN6, ("train.step_gflop", ".1f"), ("train.step_gflop_per_s", ".0f"),
                  ("train.share_of_matmul_rate", ".0f", 100), ("train.loop_share_of_matmul_rate", ".0f", 100))),
    Figures(B, rf"\| whole cached epoch, 9,400 clips, cache read from the file \| {N} s = {N} ms/clip \(x250: {N} h\)",
            bench(TRAIN6, ("train.cached_epoch_s", ".1f"), ("train.cached_ms_per_clip", ".1f"),
                  ("train.projected_5_folds_x_50_epochs_s", ".1f", HOURS))),
    # --- the reference CPU profile's cost, 2026-12-07 (metrics/bench-cpu-profile.json) ---
    Figures(B, rf"--batch-size 64`\) \| {N}, {N} images/s \| {N}, {N} images/s \| \*\*{N}x, {N}x\*\* slower",
            (*(Json(PROFILE, f"rounds.{i}.native.bare_images_per_s") for i in range(2)),
             *(Json(PROFILE, f"rounds.{i}.reference.bare_images_per_s") for i in range(2)),
             *(Json(PROFILE, f"rounds.{i}.cost.bare_embed") for i in range(2)))),
    Figures(B, rf"\| the whole embed path \(faces\.h5 -> features\.h5\), same run \| "
               rf"{N}, {N} images/s \| {N}, {N} images/s \| "
               rf"{N}x, {N}x slower",
            (*(Json(PROFILE, f"rounds.{i}.native.embed_images_per_s") for i in range(2)),
             *(Json(PROFILE, f"rounds.{i}.reference.embed_images_per_s") for i in range(2)),
             *(Json(PROFILE, f"rounds.{i}.cost.embed") for i in range(2)))),
    Figures(B, rf"50 epochs on the 64-d demo backbone, mean\) \| {N}, {N} s \| {N}, {N} s \| {N}x, {N}x slower",
            (*(Json(PROFILE, f"rounds.{i}.native.train_epoch_s", ".3f") for i in range(2)),
             *(Json(PROFILE, f"rounds.{i}.reference.train_epoch_s", ".3f") for i in range(2)),
             *(Json(PROFILE, f"rounds.{i}.cost.train_epoch") for i in range(2)))),
]


FILL = "metrics/bench-face-fill.json"  # benchmarks/face_fill.py
FILL_ROWS = ("detected", "tracked", "interpolated", "held", "filled, 1 from a detection", "filled, 2 from a detection",
             "filled, 3 from a detection", "filled, 4+ from a detection", "centred fallback in the filled frames")


def fill_error_row(camera: str, row: str) -> Figures:
    """One row of docs/robustness.md's error table of ``camera``: distance and IoU with matching and without."""
    variants = ("with matching",) if row == "tracked" else ("with matching", "interpolation only")
    cells = r" \| - \| -" if row == "tracked" else ""
    return Figures("docs/robustness.md",
                   rf"\*\*{camera.capitalize()} camera\*\* \(`cameras\.{camera}`\).*?\| {re.escape(row)} \| "
                   + r" \| ".join([rf"{N} / {N} \| {N} / {N}"] * len(variants)) + cells + r" \|",
                   tuple(Json(FILL, f"cameras.{camera}.error, {variant}.{row}.{measure}.{stat}", ".3f")
                         for variant in variants
                         for measure, stats in (("centre_distance_faces", ("median", "p90")), ("iou", ("median", "p10")))
                         for stat in stats))


FIGURES += [
    # --- docs/robustness.md: frames without a detection (metrics/bench-face-fill.json) ---
    *(Figures("docs/robustness.md",
              rf"\| {camera} \| {N} \| {N} \| {N} % \| {N} % \| {N} / {N} / {N} \| {N}: {N} \|",
              (Json(FILL, f"cameras.{camera}.copies.all", "d"), Json(FILL, f"cameras.{camera}.rates.all.frames", "d"),
               Json(FILL, f"cameras.{camera}.rates.all.hit_rate", ".1f", 100),
               Json(FILL, f"cameras.{camera}.rates.all.box_rate", ".1f", 100),
               *(Json(FILL, f"cameras.{camera}.rates.all.{name}", "d") for name in ("tracked", "interpolated", "held")),
               Json(FILL, f"cameras.{camera}.copies.some_but_not_all", "d"),
               Json(FILL, f"cameras.{camera}.copies.with_a_box_in_every_frame", "d")))
      for camera in ("still", "panning")),
    *(fill_error_row(camera, row) for camera in ("still", "panning") for row in FILL_ROWS),
    Figures("docs/robustness.md", rf"metrics/bench-face-fill\.json` \({N} s on the 2 cores\)",
            (Json(FILL, "seconds", ".0f"),)),
    Figures("docs/robustness.md",
            rf"\(median {N} face sides one sampled frame from a detection, {N} four or more away: "
            rf"`frames_to_detection` is the measure of trust for those\), while matching keeps the filled boxes "
            rf"within a few hundredths \(median {N} to {N}\)\. Matching costs the still camera a little in the tail "
            rf"\(90th percentile {N} instead of {N} next to a detection\)",
            (Json(FILL, "cameras.panning.error, interpolation only.filled, 1 from a detection.centre_distance_faces.median",
                  ".3f"),
             Json(FILL, "cameras.panning.error, interpolation only.filled, 4+ from a detection.centre_distance_faces.median",
                  ".3f"),
             Json(FILL, "cameras.panning.error, with matching.filled, 1 from a detection.centre_distance_faces.median",
                  ".3f"),
             Json(FILL, "cameras.panning.error, with matching.filled, 4+ from a detection.centre_distance_faces.median",
                  ".3f"),
             Json(FILL, "cameras.still.error, with matching.filled, 1 from a detection.centre_distance_faces.p90", ".3f"),
             Json(FILL, "cameras.still.error, interpolation only.filled, 1 from a detection.centre_distance_faces.p90",
                  ".3f"))),
]


def entry_id(entry: Figures) -> str:
    return f"{entry.doc}: {re.sub(r'[^A-Za-z0-9 .,=%-]', '', entry.pattern)[:60].strip()}"


@pytest.mark.parametrize("entry", FIGURES, ids=[entry_id(entry) for entry in FIGURES])
def test_the_doc_quotes_the_committed_figures(entry):
    text = collapse((REPO / entry.doc).read_text())
    pattern = re.compile(entry.pattern)
    assert pattern.groups == len(entry.sources), "one source per group of the expression"
    matches = list(pattern.finditer(text))
    assert matches, f"{entry.doc} no longer has {entry.pattern!r}: update the entry with the doc"
    try:
        expected = [source.text() for source in entry.sources]
    except NotAvailable as missing:
        pytest.skip(f"earlier figures need git history: {missing}")
    for match in matches:
        wrong = [f"{source}: the doc says {said}, the file {want}"
                 for source, said, want in zip(entry.sources, match.groups(), expected) if said != want]
        assert not wrong, f"{entry.doc}, {match.group(0)[:120]!r}:\n" + "\n".join(wrong)


def test_lookup_reads_paths_lists_and_every_value():
    data = {"a": {"x": [1, {"b": 2}]}, "s": {"0": {"u": 3}, "1": {"u": 5}}}
    assert lookup(data, "a.x.1.b") == 2
    assert lookup(data, "s.*.u") == [3, 5]


def test_a_wrong_figure_fails():
    """The check itself: a doc that says 97.6 where the file says 97.7 is caught."""
    source = Json(SEEDS, "mean.uar")
    entry = Figures("README.md", rf"\*\*{N} % ± [\d.]+\*\* over 5 seeds", (source,))
    said = re.search(entry.pattern, collapse((REPO / entry.doc).read_text())).group(1)
    assert said == source.text()
    wrong = re.search(entry.pattern, f"**{float(said) - 0.1:.1f} % ± 0.7** over 5 seeds").group(1)
    assert wrong != source.text()

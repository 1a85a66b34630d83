"""The ``tg-dfer`` command line: one command per DVC stage, plus tools.

Every stage command reads its own section of params.yaml (``--params`` to point elsewhere), checks
it before any work starts, and calls the library with explicit arguments. Stage modules import
torch and friends, so they are imported only when their command runs: ``tg-dfer --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import click

from pipeline.deps import STAGES
from tg_dfer import __version__, cpu_profile

# command -> the one-line help of `tg-dfer --help`. A stage's module is pipeline/stages/<command>.py, a
# tool's pipeline/tools/<command>.py ("-" spelt "_").
COMMANDS = {
    "demo": "Render the demo dataset of synthetic face videos -> data/demo/videos/.",
    "prepare": "List a dataset's clips -> data/<dataset>/manifest.csv, classes.json, prepare_report.json.",
    "faces": "Decode, sample, detect and crop faces -> data/<dataset>/faces.h5.",
    "backbone": "Pretrain the demo's own small CLIP on rendered faces -> data/backbone/clip.pt (demo only).",
    "embed": "CLIP image embeddings of the crops -> data/<dataset>/features.h5.",
    "qc": "Every clip that is not fully ok, and why -> metrics/<dataset>/qc.csv.",
    "text": "CLIP text embeddings of a prompt set -> data/text/<prompt_set>.h5.",
    "train": "Train TG-DFER on cached features, one fold -> models/<dataset>/fold<k>/.",
    "evaluate": "Metrics, predictions and plots of the trained folds -> metrics/<dataset>/.",
    "use": "Point params.yaml at a dataset (demo, dfew, ferv39k, mafw, csv) with the paper's or the demo's settings.",
    "ablate": "Queue the experiments of a paper ablation table (dvc exp run --queue) and start them.",
    "report": "Markdown tables (and plots) of the ablation experiments -> report/<dataset>/.",
    "check-metrics": "Compare reproduced metrics with the committed ones; fail beyond a tolerance.",
    "export": "Bundle trained folds into one model file -> exports/<dataset>.pt.",
    "predict": "Run a model file on new videos -> probabilities, frame influence, figures.",
    "bench": "Speed of embedding, training and decoding against their baselines (a tool, not a stage).",
    "doctor": "What this machine has and lacks for each stage: packages, ffmpeg, GPU, weights, disk.",
}


class StageGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        python_name = name.replace("-", "_")
        package = "stages" if name in STAGES else "tools"
        module = importlib.import_module(f"pipeline.{package}.{python_name}")
        return getattr(module, python_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=StageGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tg-dfer")
def main() -> None:
    """TG-DFER: dynamic facial expression recognition from cached CLIP features.

    The stages run in this order (`dvc repro` runs them all): demo, prepare, faces, backbone,
    embed, qc, text, train, evaluate. Each reads the params.yaml section of its own name (qc has
    none; backbone trains the demo's own small CLIP and only writes a marker for other datasets);
    `tg-dfer COMMAND --help` says which files it reads and writes and which params it takes.
    Tools around the pipeline: ablate, report and check-metrics (ablation queues, their report,
    the reproduction check); export (trained folds -> one model file) and predict (a model file
    on your own videos); doctor (what this machine has and lacks for each stage).

    Commands that compute with torch on the CPU run under the reference CPU profile (kernels
    capped at AVX2, MKL's reproducible branch, 2 threads): the same bytes on any x86-64 CPU with
    AVX2 and any core count. TG_DFER_CPU_PROFILE=native uses the whole CPU instead; results then
    depend on the machine (docs/reference-run.md).
    """
    try:
        cpu_profile.requested()
    except cpu_profile.ProfileError as error:
        raise click.UsageError(str(error)) from error
    if "torch" in sys.modules:  # the command's module is loaded by now: only torch commands pay for this
        previous = cpu_profile.activate()
        click.get_current_context().call_on_close(lambda: cpu_profile.restore(previous))

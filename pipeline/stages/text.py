"""The ``text`` stage: CLIP text embeddings of a prompt set -> data/text/<prompt_set>.h5."""

from __future__ import annotations

import click

from pipeline.settings.clip import backbone_device, backbone_spec
from pipeline.settings.params import DEFAULT_PARAMS, load_params
from pipeline.settings.text import prompt_set as read_prompt_set
from pipeline.paths import text_path
from tg_dfer import cpu_profile
from tg_dfer.backbone import WeightsError, load_backbone, weights_note
from tg_dfer.devices import DeviceError, pick_device
from tg_dfer.embed.text import build_text_cache
from tg_dfer.io.text_h5 import write_text
from tg_dfer.prompt_sets import PromptSetError, load_prompt_set


@click.command("text")
@click.option("--params", "params_path", default=DEFAULT_PARAMS, show_default=True, help="Parameter file.")
def text(params_path: str) -> None:
    """Embed the class prompts and fine-grained descriptors -> data/text/<prompt_set>.h5.

    The prompt set (text.prompt_set: dfew, ferv39k, mafw shipped in tg_dfer/prompts/, or a path to
    a JSON file of the same form) gives the class names, the class prompt template ("an
    expression of {}.") and one descriptor per class. Learnable context prompts cannot be cached:
    training runs the frozen text encoder on them.

    Params: text.prompt_set; clip.model, clip.checkpoint, clip.seed, clip.device, clip.download.
    """
    params = load_params(params_path)
    prompt_set = read_prompt_set(params, params_path)
    spec = backbone_spec(params, params_path)
    try:
        prompts = load_prompt_set(prompt_set)
        device = pick_device(backbone_device(params, params_path))
        loaded = load_backbone(spec, device)
    except (PromptSetError, WeightsError, DeviceError) as error:
        raise click.ClickException(str(error)) from error
    out = text_path(prompt_set)
    cache = build_text_cache(loaded, prompts)
    cache.attrs["cpu_profile"] = cpu_profile.record(device)
    write_text(out, cache)
    note = weights_note(loaded.attrs())
    click.echo(f"text: {len(prompts.class_names)} classes of prompt set {prompts.name} -> {out}{note}")

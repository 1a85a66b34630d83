"""Captions of rendered faces, in the words of the DFEW prompt set.

The demo's backbone learns language only from these captions, so their words decide what the
text embeddings of the prompt set (``tg_dfer/prompts/dfew.json``) mean to it: the class prompts
("an expression of happiness.") and DFER-CLIP's descriptors ("a smiling mouth, raised cheeks,
wrinkled eyes, and arched eyebrows."). A caption therefore names what the renderer drew with the
phrases of those descriptors, split at their commas, and the expression with the prompt set's
class names, template and aliases ("a happy face").

Which phrase a face shows is read off its action parameters (:class:`FaceParams`), not off its
label: a blink is not "narrow eyes", and a half-formed smile gets "a smiling mouth" only once the
mouth corners are really up. Phrases that no parameter draws ("tears", "a frozen expression",
"a retracted chin") go with the class they describe, at its apex only, as the class name does.
"""

from __future__ import annotations

import numpy as np

from tg_dfer.demo.face import FaceParams
from tg_dfer.prompt_sets import PromptSet

# Below this intensity the renderer's face is not told apart from neutral by eye: it is captioned neutral.
NEUTRAL_BELOW = 0.2
# From this intensity on a face shows its class plainly (the demo's apex_frames use the same cut).
APEX_FROM = 0.5

# Phrases of DFER-CLIP's descriptors that stand for a class as a whole; no action parameter draws them.
CLASS_PHRASES = {
    "sadness": ("tears",),
    "surprise": ("a frozen expression",),
    "fear": ("a retracted chin",),
    "neutral": ("relaxed facial muscles",),
}
# What a face with no action in a part of it shows there (the neutral descriptor, part by part).
NEUTRAL_PHRASES = ("a straight mouth", "a smooth forehead", "unremarkable eyebrows")

# Shares of the caption forms; the bare class prompt is kept rare so that a batch holds few equal captions.
FORMS = {"prompt": 0.15, "phrases": 0.3, "prompt_with": 0.35, "face_with": 0.2}
# Each phrase a face shows is kept in its caption with this probability (at least one is always kept).
KEEP_PHRASE = 0.75


def face_phrases(p: FaceParams) -> list[tuple[str, ...]]:
    """The descriptor phrases that the face drawn from ``p`` shows; each entry lists synonyms.

    Thresholds sit at about 40 % of the smallest apex value of a class that moves the parameter
    (tg_dfer.demo.face.EXPRESSIONS), above the renderer's blinks and talking movements.
    """
    phrases: list[tuple[str, ...]] = []
    if p.mouth_curve >= 0.45:
        phrases.append(("a smiling mouth",))
    elif p.mouth_curve <= -0.5:
        phrases.append(("a downward turned mouth",))
    if p.mouth_open >= 0.6:
        phrases.append(("an open mouth",))
    elif p.mouth_open >= 0.25:
        phrases.append(("parted lips",))
    if p.lip_press >= 0.5:
        phrases.append(("tightened lips",))
    if p.upper_lip_raise >= 0.45:
        phrases.append(("a tightened mouth",))
    if p.cheek_raise >= 0.45:
        phrases.append(("raised cheeks",))
    if p.eye_open >= 0.4:
        phrases.append(("widened eyes",))
    elif -0.9 < p.eye_open <= -0.2:  # lower still is a blink, which carries no expression
        if p.cheek_raise >= 0.45:
            phrases.append(("wrinkled eyes",))
        elif p.brow_inner >= 0.45:
            phrases.append(("drooping upper eyelids",))
        else:
            phrases.append(("narrow eyes",))
    if p.brow_raise >= 0.35:
        phrases.append(("raised eyebrows",))
    elif p.brow_raise <= -0.25:
        phrases.append(("lowered eyebrows",))
    if p.brow_pull >= 0.5:
        phrases.append(("furrowed eyebrows", "a furrowed brow"))
    if p.brow_arch >= 0.45:
        phrases.append(("arched eyebrows",))
    # Raising the brows, or only their inner ends (AU1), folds the forehead.
    if p.brow_raise >= 0.35 or p.brow_inner >= 0.45:
        phrases.append(("a wrinkled forehead",))
    if p.nose_wrinkle >= 0.5:
        phrases.append(("a wrinkled nose",))
    elif p.nose_wrinkle >= 0.15:
        phrases.append(("flared nostrils",))
    return phrases


def shown_class(label: str, intensity: float) -> str:
    """The class a face of ``label`` at ``intensity`` shows: neutral until the expression is visible."""
    return "neutral" if intensity < NEUTRAL_BELOW else label


def caption(label: str, intensity: float, params: FaceParams, prompts: PromptSet, rng: np.random.Generator) -> str:
    """One caption of a face of class ``label`` drawn at ``intensity`` (0 neutral .. 1 apex) with ``params``.

    The wording is drawn from ``rng``: the form (the class prompt alone, descriptor phrases alone,
    the class prompt "with" phrases, or "a <alias> face with" phrases), which of the face's
    phrases are kept, their order and synonyms.
    """
    if label not in prompts.class_names:
        raise ValueError(f"class {label!r} is not in prompt set {prompts.name} ({', '.join(prompts.class_names)})")
    shown = shown_class(label, intensity)
    apex = shown == "neutral" or intensity >= APEX_FROM
    phrases = face_phrases(params)
    if apex:
        phrases += [(phrase,) for phrase in CLASS_PHRASES.get(shown, ())]
    if shown == "neutral":
        phrases += [(phrase,) for phrase in NEUTRAL_PHRASES]
    chosen = _pick_phrases(phrases, rng)
    forms = list(FORMS) if apex else ["phrases", "face_with"]
    if not chosen:
        forms = [form for form in forms if form in ("prompt", "face_with")]
    weights = np.array([FORMS[form] for form in forms])
    form = forms[int(rng.choice(len(forms), p=weights / weights.sum()))]
    prompt = prompts.class_prompt_template.format(shown)
    if form == "prompt":
        return prompt
    listed = join_phrases(chosen)
    if form == "phrases":
        return f"{listed}."
    if form == "prompt_with":
        return f"{prompt.rstrip('.')}, with {listed}."
    adjective = str(rng.choice(adjectives(prompts)[shown]))
    face = f"{article(adjective)} {adjective} face" if apex else f"a slightly {adjective} face"
    return f"{face} with {listed}." if chosen else f"{face}."


def adjectives(prompts: PromptSet) -> dict[str, list[str]]:
    """Per class, the prompt set's aliases that differ from the class name ("happy"), else the name itself."""
    words = {name: [alias for alias, target in prompts.aliases.items() if target == name and alias != name]
             for name in prompts.class_names}
    return {name: found or [name] for name, found in words.items()}


def article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def join_phrases(phrases: list[str]) -> str:
    """"a", "a and b", "a, b, and c": the list style of DFER-CLIP's descriptors."""
    if len(phrases) <= 2:
        return " and ".join(phrases)
    return ", ".join(phrases[:-1]) + ", and " + phrases[-1]


def _pick_phrases(phrases: list[tuple[str, ...]], rng: np.random.Generator) -> list[str]:
    if not phrases:
        return []
    keep = rng.random(len(phrases)) < KEEP_PHRASE
    keep[rng.integers(len(phrases))] = True
    order = rng.permutation(len(phrases))
    return [str(rng.choice(phrases[index])) for index in order if keep[index]]

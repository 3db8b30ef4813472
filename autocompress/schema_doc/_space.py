"""The search-space reference: the file's layout, distributions and every method's knobs."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from autocompress.schema_doc._fields import summary, table

_RULE_KEYS = (
    ("select", "`name`: a glob (`features.*`) or `re:REGEX`, or a list of them; and/or `type`: "
               "a layer class name (`Conv2d`, `Linear`, `Embedding`) or a list of them. A layer "
               "matches when it matches every key given; a rule that selects no layer is "
               "refused, listing the model's layers."),
    ("methods", "method name -> knob -> distribution. The methods and their knobs are listed "
                "below."),
    ("choose", "stage -> list of alternatives (`none` or methods of that stage, at least two): "
               "the search picks one per layer. Stages: {stages}. A chosen method with no "
               "`methods` entry runs with its defaults."),
)
_DISTRIBUTIONS = (
    ("a constant", "`bits: 8`", "not searched"),
    ("choices", "`bits: {choices: [2, 4, 8, 32]}`", "`trial.suggest_categorical`"),
    ("an integer range", "`bits: {low: 2, high: 8, step: 2}`",
     "`trial.suggest_int` (low, high and step integers)"),
    ("a number range", "`ratio: {low: 0.0, high: 0.75, step: 0.125}`, "
                       "`{low: 0.01, high: 1.0, log: true}`", "`trial.suggest_float`"),
)
_LAYOUT = """\
A search space is a YAML file (the recipe's `space`, usually one of `search_spaces/`). Its
top-level keys are `name`, `description`, `layers` (a list of rules) and the training-time
sections {training}. Each rule has:

{rules}

Rules apply in order; a later rule overrides an earlier one for the same layer and knob.
Identity values (a prune ratio of 0, a rank ratio of 1, 32 bits) leave a layer as it is.
Within a layer the methods run in stage order ({order}); a layer takes at most one method
per stage. Output layers are never pruned, a layer whose class overrides `forward()` takes
only in-place methods, and knob values that would not compress a layer of its shape (a rank
whose factors outgrow it) are kept out of its distribution when the space is bound to the
model.

## Distributions

{distributions}

`log: true` needs `low > 0` and no step (Optuna's rule). An integer knob (an `int` below) needs
an integer range. Every value a distribution can reach (each value of a small integer range,
else both ends) must be valid for the method, or the space is refused with the knob's path.
"""


def _rows(header: tuple[str, ...], rows: tuple[tuple[str, ...], ...]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _stage_order() -> str:
    from autocompress.methods.base import STAGE_NAMES

    return " -> ".join(STAGE_NAMES[s] for s in sorted(STAGE_NAMES))


def _method_section(name: str) -> list[str]:
    from autocompress.methods import get_method
    from autocompress.methods.base import STAGE_NAMES

    method = get_method(name)
    facts = [f"stage: {STAGE_NAMES[method.config.stage]}",
             "layers: " + ", ".join(f"`{t.__name__}`" for t in method.layer_types)]
    if method.in_place:
        facts.append("in place (also applies to a layer whose class overrides `forward()`)")
    if method.replaces_weights:
        facts.append("replaces the weight format (no sparsify / quantize / share after it)")
    if method.prunes_outputs:
        facts.append("removes output channels (never on output layers)")
    return [f"### `{name}`", "", summary(method.config), "", "; ".join(facts) + ".", "",
            *table(method.config, allowed=False), ""]


def _methods_by_stage() -> list[str]:
    from autocompress.methods import METHODS

    names = sorted(METHODS, key=lambda n: (METHODS[n].config.stage, n))
    return [line for name in names for line in _method_section(name)]


def _training_sections() -> list[str]:
    from autocompress.methods.plan import TRAINING

    out = ["## Training-time sections", "",
           "Top-level keys of the space file: they change how a candidate is fine-tuned, not "
           "its layers. Each knob takes a distribution like a method's.", ""]
    for key, config_cls in TRAINING.items():
        out += [f"### `{key}`", "", summary(config_cls), "", *table(config_cls, allowed=False), ""]
    return out


def _used(raw: dict) -> list[str]:
    """The methods and training sections a space file uses, in order of appearance."""
    from autocompress.methods.plan import TRAINING

    found: list[str] = []
    for rule in raw.get("layers") or []:
        names = list(rule.get("methods") or {})
        for options in (rule.get("choose") or {}).values():
            names += [n for n in options if n != "none"]
        for name in names:
            if name not in found:
                found.append(name)
    return found + [key for key in TRAINING if raw.get(key) is not None]


def _description(path: Path, raw: dict) -> str:
    """The file's ``description``, else the first sentence of its leading comment."""
    text = str(raw.get("description", ""))
    if not text:
        lines = []
        for line in path.read_text().splitlines():
            if not line.startswith("#"):
                break
            lines.append(line.lstrip("#").strip())
        text = re.split(r"\.\s+(?=[A-Z])", " ".join(lines))[0].rstrip(".") + "." if lines else ""
    return " ".join(text.split()).replace("|", "\\|")


def _shipped(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    out = ["## Spaces shipped in `search_spaces/`", "", "| file | description | uses |",
           "|---|---|---|"]
    for path in sorted(folder.glob("*.yaml")):
        raw = yaml.safe_load(path.read_text()) or {}
        description = _description(path, raw)
        uses = ", ".join(f"`{n}`" for n in _used(raw))
        out.append(f"| `{path.name}` | {description} | {uses} |")
    return [*out, ""]


def render(header: str, spaces: Path) -> str:
    """The whole reference; ``spaces`` is the folder of the shipped space files."""
    from autocompress.methods.plan import TRAINING
    from autocompress.space.schema import CHOICE_STAGES

    stages = ", ".join(f"`{s}`" for s in CHOICE_STAGES)
    rules = tuple((f"`{key}`", text.replace("{stages}", stages)) for key, text in _RULE_KEYS)
    layout = _LAYOUT.format(training=", ".join(f"`{k}`" for k in TRAINING),
                            rules=_rows(("key", "what it holds"), rules), order=_stage_order(),
                            distributions=_rows(("form", "example", "sampled with"),
                                                _DISTRIBUTIONS))
    out = [header, "# Search-space reference", "", layout, "## Methods", "",
           "Knob names are the keys under a method in `methods:` (and in a plan's dict form).",
           "", *_methods_by_stage(), *_training_sections(), *_shipped(spaces)]
    return "\n".join(out).rstrip() + "\n"

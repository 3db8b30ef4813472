"""The documentation cannot drift: generated references, recipes, method pages, README commands."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest

from autocompress import schema_doc
from autocompress.recipe import Recipe
from autocompress.schema_doc import NOTES, field_rows
from autocompress.schema_doc._fields import nested

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def test_committed_references_equal_the_generated_text():
    stale = schema_doc.stale(ROOT)
    assert not stale, f"{stale} stale: run python -m autocompress.schema_doc and commit"


def _paths(cls: type, prefix: str = "") -> dict[str, type]:
    """Every dotted recipe field -> the class that holds it (nested sections walked)."""
    out = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.metadata.get("internal"):
            continue
        path = f"{prefix}{f.name}"
        out[path] = cls
        inner = nested(hints[f.name])
        if inner is not None:
            out.update(_paths(inner, f"{path}."))
    return out


def test_every_recipe_field_is_in_the_reference_with_a_description():
    text = (DOCS / "reference" / "recipe.md").read_text()
    for path in _paths(Recipe):
        section, _, name = path.rpartition(".")
        heading = f"## `{section}`" if section else "## Top level"
        assert heading in text, path
        block = text.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
        row = next((line for line in block.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"{path} missing from recipe.md"
        assert not row.rstrip().endswith("|  |"), f"{path} has no description"


def test_notes_name_real_fields_only():
    paths = _paths(Recipe)
    assert not sorted(set(NOTES) - set(paths)), "NOTES keys that are no recipe field"


def test_field_rows_read_choices_bounds_and_defaults():
    from autocompress.recipe import HardwareConfig, SearchConfig

    rows = {row[0]: row for row in field_rows(SearchConfig)}
    assert rows["trials"][1:4] == ("int", "`16`", "an integer >= 1")
    assert rows["reduction_factor"][3] == "an integer >= 2"
    hardware = {row[0]: row for row in field_rows(HardwareConfig)}
    assert hardware["max_seconds"][1:4] == ("float", "`2.0`", "a number > 0")
    assert "cpu-onnxruntime" in hardware["target"][3]


def test_space_reference_lists_every_method_and_knob():
    from autocompress.methods import METHODS
    from autocompress.methods.plan import TRAINING

    text = (DOCS / "reference" / "space.md").read_text()
    for name, method in METHODS.items():
        block = text.split(f"### `{name}`\n", 1)[1].split("\n### ", 1)[0]
        for f in dataclasses.fields(method.config):
            assert f"| `{f.name}` |" in block, f"{name}.{f.name}"
    for key in TRAINING:
        assert f"### `{key}`" in text


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_parses(path):
    recipe = Recipe.from_yaml(path)
    assert recipe.resolve(recipe.space).is_file()


@pytest.mark.parametrize("path", sorted((ROOT / "search_spaces").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_space_parses(path):
    from autocompress.space.schema import SearchSpace

    assert SearchSpace.from_yaml(path).rules


def test_check_mode_reports_a_stale_file(tmp_path, capsys):
    assert schema_doc.main(["--root", str(tmp_path)]) == 0
    assert schema_doc.main(["--check", "--root", str(tmp_path)]) == 0
    (tmp_path / "docs" / "reference" / "space.md").write_text("edited by hand\n")
    assert schema_doc.main(["--check", "--root", str(tmp_path)]) == 1
    assert "space.md" in capsys.readouterr().out


def test_docs_links_point_to_files_that_exist():
    pages = [ROOT / "README.md", *DOCS.rglob("*.md")]
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} -> {target}"


METHOD_PAGES = ("pruning", "quantization_sharing", "low_rank", "compact_filters", "distillation")


def test_every_method_and_knob_is_on_a_method_page():
    from autocompress.methods import METHODS
    from autocompress.methods.plan import TRAINING

    pages = {name: (DOCS / "methods" / f"{name}.md").read_text() for name in METHOD_PAGES}
    configs = {name: method.config for name, method in METHODS.items()} | dict(TRAINING)
    for name, config in configs.items():
        page = next((p for p in pages.values() if f"## `{name}`" in p), None)
        assert page is not None, f"method {name!r} has no section on a docs/methods page"
        section = page.split(f"## `{name}`", 1)[1].split("\n## ", 1)[0]
        for f in dataclasses.fields(config):
            assert f"`{f.name}`" in section, f"{name}.{f.name} not described"


EXAMPLES = DOCS / "examples"


def test_byo_example_compresses_saves_and_reloads_a_hugging_face_model(tmp_path, monkeypatch):
    import runpy

    pytest.importorskip("transformers")
    monkeypatch.syspath_prepend(str(EXAMPLES / "byo"))
    example = runpy.run_path(str(EXAMPLES / "byo.py"))
    result = example["main"](tmp_path)
    assert result["size"] < 0.8 * result["float_size"]  # 4-bit embeddings, pruning, SVD
    assert result["max_gap"] < 1e-5  # loaded (base=, trust_code) = the compressed model


def test_byo_recipe_resolves_its_own_model_data_and_metric(monkeypatch):
    from autocompress.methods import compressible_layers
    from autocompress.search.checks import check_recipe
    from autocompress.space import SearchSpace, bind

    pytest.importorskip("transformers")
    monkeypatch.syspath_prepend(str(EXAMPLES / "byo"))
    recipe = Recipe.from_yaml(EXAMPLES / "byo" / "recipe.yaml")
    check_recipe(recipe)  # imports tinybert's model, data and metric; reads a batch of each
    assert recipe.quality == {"balanced_accuracy": ">="}
    import tinybert

    layers = compressible_layers(tinybert.make_model(), tinybert.make_data(8, 8, 8)["val"][:2][
        "input_ids"])
    assert bind(SearchSpace.from_yaml(recipe.resolve(recipe.space)), layers)


def _shell_blocks(text: str) -> list[str]:
    """The commands of the ```bash blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #", 1)[0].strip()
            if line:
                commands.append(line)
    return commands


def test_readme_test_command_is_the_one_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    tests = [c for c in _shell_blocks(readme) if "pytest" in c]
    assert len(tests) == 1 and tests[0] in ci.splitlines()


def test_documented_cli_commands_parse(capsys):
    """Every `autocompress ...` line of the README and docs parses with the real CLI parser."""
    import shlex

    from autocompress.cli.parser import build_parser

    parser = build_parser()
    pages = [ROOT / "README.md", *DOCS.rglob("*.md")]
    checked = 0
    for page in pages:
        for command in _shell_blocks(page.read_text()):
            for part in command.split("&&"):
                words = shlex.split(part)
                if words and words[0].endswith("autocompress") and len(words) > 1:
                    try:
                        parser.parse_args(words[1:])
                    except SystemExit:
                        pytest.fail(f"{page.relative_to(ROOT)}: {part.strip()!r} does not parse:"
                                    f" {capsys.readouterr().err}")
                    checked += 1
    assert checked >= 6

"""The Examples in the public API's docstrings run, and say what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

# module -> the public names whose docstrings carry examples (so that losing one is noticed)
DOCUMENTED = {
    "autocompress.methods.plan": ["CompressionPlan"],
    "autocompress.methods.apply": ["apply_plan"],
    "autocompress.export.artifact": ["save_compressed", "load_compressed"],
    "autocompress.hardware.budget": ["Budget.parse"],
    "autocompress.pareto": ["non_dominated", "hypervolume", "orient"],
    "autocompress.recipe": ["Recipe.from_dict"],
    "autocompress.schema_doc": ["recipe_reference"],
    "autocompress.schema_doc._fields": ["attributes", "field_rows", "markdown"],
}
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("module_name", sorted(DOCUMENTED))
def test_docstring_examples_run(module_name):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = {t.name.removeprefix(f"{module.__name__}."): t for t in finder.find(module)}
    missing = [name for name in DOCUMENTED[module_name] if not tests.get(name, None)
               or not tests[name].examples]
    assert not missing, f"{module_name}: no Examples in the docstrings of {missing}"
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in tests.values():
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed (above)"

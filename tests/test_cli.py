import subprocess
import sys

import pytest

from autocompress.cli import main
from tests.helpers import QUICKSTART


def run(capsys, *args):
    code = main(list(args))
    return code, capsys.readouterr().err.strip()


def write_recipe(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(QUICKSTART.read_text().replace("space: ../search_spaces",
                                                   f"space: {QUICKSTART.parents[1]}/search_spaces")
                    + text)
    return path


@pytest.mark.parametrize(
    ("extra", "args", "message"),
    [
        ("colour: blue\n", (), "colour: unknown key; allowed keys: name, model"),
        ("", ("--budget", "size<60"), "budget 'size<60': cannot parse"),
        ("", ("--budget", "speed<=3"), "unknown metric 'speed'; allowed: latency_ms"),
        ("", ("--sampler", "cmaes"),
         "search.sampler: invalid value 'cmaes'; allowed: one of 'tpe'"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, extra, args, message):
    code, err = run(capsys, "search", str(write_recipe(tmp_path, extra)), *args)
    assert code == 2
    assert message in err
    assert len(err.splitlines()) == 1


def test_missing_recipe_file(tmp_path, capsys):
    code, err = run(capsys, "search", str(tmp_path / "nope.yaml"))
    assert code == 2 and "recipe: file not found" in err


def test_unknown_experiment(tmp_path, capsys):
    from autocompress.tracking import init_store

    init_store(f"sqlite:///{tmp_path}/m.db")  # reading commands create no store of their own
    code, err = run(capsys, "pareto", "nope", "--tracking-uri", f"sqlite:///{tmp_path}/m.db")
    assert code == 2 and "experiment 'nope' not found" in err


def test_no_traceback_in_a_real_process(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "autocompress.cli", "pick", "x", "--budget", "bogus",
         "--output", str(tmp_path / "m.acz")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("autocompress: error: budget 'bogus'")


def test_import_is_light():
    code = ("import sys, autocompress, autocompress.search, autocompress.tracking, "
            "autocompress.training; "
            "print(sorted(m for m in ('ray', 'mlflow', 'pytorch_lightning', 'lightning') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_search_refuses_a_target_that_does_not_time(tmp_path, capsys):
    recipe = write_recipe(tmp_path, "").read_text().replace("target: cpu-torch",
                                                            "target: analytic")
    (tmp_path / "r.yaml").write_text(recipe)
    code, err = run(capsys, "search", str(tmp_path / "r.yaml"))
    assert code == 2 and "'analytic' does not time" in err

"""Job packaging for `autocompress submit` (the cluster round trip is in test_cluster.py)."""

import shlex

import pytest
import yaml

from autocompress.cli import main
from autocompress.errors import ConfigError
from autocompress.search.jobs import job_spec
from tests.helpers import QUICKSTART, ROOT


def test_the_job_carries_the_recipe_and_its_space_with_relative_paths():
    spec = job_spec(QUICKSTART, ["--trials", "4"])
    assert spec.working_dir == ROOT  # recipes/ and search_spaces/ meet at the repository
    args = shlex.split(spec.entrypoint)
    assert args[:3] == ["autocompress", "search", "recipes/quickstart.yaml"]
    assert args[3:] == ["--ray-address", "auto", "--quiet", "--trials", "4"]
    assert spec.runtime_env["working_dir"] == str(ROOT)
    assert ".venv" in spec.runtime_env["excludes"] and ".git" in spec.runtime_env["excludes"]
    assert spec.runtime_env["env_vars"]["HF_HUB_OFFLINE"] == "1"


def test_a_self_contained_recipe_folder_is_the_working_dir(tmp_path):
    raw = yaml.safe_load(QUICKSTART.read_text())
    (tmp_path / "space.yaml").write_text((ROOT / "search_spaces/cnn_default.yaml").read_text())
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({**raw, "space": "space.yaml"}))
    spec = job_spec(tmp_path / "r.yaml", env={"MLFLOW_TRACKING_TOKEN": "t"})
    assert spec.working_dir == tmp_path
    assert shlex.split(spec.entrypoint)[2] == "r.yaml"
    assert spec.runtime_env["env_vars"]["MLFLOW_TRACKING_TOKEN"] == "t"


def test_a_missing_space_is_refused_before_submission(tmp_path):
    raw = yaml.safe_load(QUICKSTART.read_text())
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({**raw, "space": "nope.yaml"}))
    with pytest.raises(ConfigError, match="nope.yaml"):
        job_spec(tmp_path / "r.yaml")


def test_unreachable_job_api_and_bad_env_are_one_line_errors(capsys):
    assert main(["submit", str(QUICKSTART), "--env", "NOEQUALS"]) == 2
    assert "--env: invalid value 'NOEQUALS'" in capsys.readouterr().err
    assert main(["jobs", "status", "raysubmit_x", "--address", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("autocompress: error: --address: cannot reach the Ray job API")
    assert len(err.strip().splitlines()) == 1

"""The Python API and the reading commands on one recorded search (no search is run here)."""

import csv
import io
import json
from types import SimpleNamespace

import pytest

import autocompress
from autocompress.cli import main
from autocompress.errors import ConfigError
from autocompress.locations import resolve_tracking_uri
from tests.fake_search import fake_store


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    return fake_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(autouse=True)
def no_env_uri(monkeypatch):
    for name in ("AUTOCOMPRESS_TRACKING_URI", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)


def run(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def test_pareto_is_a_dataframe_of_the_front(uri):
    front = autocompress.pareto("exp", tracking_uri=uri)
    assert list(front["trial"]) == ["a", "b"]  # best accuracy first
    assert list(front["plan"]) == ["features.0: prune 50% · 8-bit", "classifier.3: 4-bit"]
    assert front.attrs["baseline"]["accuracy"] == 0.97 and front.attrs["tracking_uri"] == uri
    every = autocompress.pareto("exp", tracking_uri=uri, include_all=True)
    assert list(every["pareto"]) == [True, True, False]


def test_pick_follows_each_metrics_direction(uri, tmp_path):
    assert autocompress.pick("exp", tracking_uri=uri).trial_id == "a"  # best accuracy
    out = tmp_path / "m.acz"
    chosen = autocompress.pick("exp", ["size_kb<=15"], tracking_uri=uri, output=out)
    assert chosen.trial_id == "b" and out.read_bytes() == b"b"
    with pytest.raises(ConfigError, match="--maximize latency_ms: lower is better for "
                                          "'latency_ms'; use --minimize latency_ms"):
        autocompress.pick("exp", maximize="latency_ms", tracking_uri=uri)
    with pytest.raises(ConfigError, match="--minimize accuracy: higher is better"):
        autocompress.pick("exp", minimize="accuracy", tracking_uri=uri)


def test_cli_pick_refuses_the_wrong_direction_on_one_line(uri, tmp_path, capsys):
    code, _, err = run(capsys, "pick", "exp", "--tracking-uri", uri, "--maximize", "size_kb",
                       "--output", tmp_path / "m.acz")
    assert code == 2 and len(err.splitlines()) == 1
    assert "use --minimize size_kb" in err and not (tmp_path / "m.acz").exists()


def test_cli_pick_formats(uri, tmp_path, capsys):
    out = tmp_path / "m.acz"
    code, text, _ = run(capsys, "pick", "exp", "--tracking-uri", uri, "--output", out,
                        "--format", "json")
    assert code == 0 and json.loads(text)["trial"] == "a" and json.loads(text)["tracking_uri"]
    code, text, _ = run(capsys, "pick", "exp", "--tracking-uri", uri, "--output", out,
                        "--format", "csv")
    assert next(csv.DictReader(io.StringIO(text)))["trial"] == "a"
    code, text, _ = run(capsys, "pick", "exp", "--tracking-uri", uri, "--output", out)
    assert "picked a" in text and f"tracking: {uri} (--tracking-uri)" in text


def test_cli_pareto_formats_and_readable_plans(uri, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, text, _ = run(capsys, "pareto", "exp", "--tracking-uri", uri, "--plans", "--all")
    assert code == 0
    assert "features.0: prune 50% · 8-bit" in text  # not eaten as rich markup
    assert f"tracking: {uri} (--tracking-uri)" in text
    code, text, _ = run(capsys, "pareto", "exp", "--tracking-uri", uri, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["trial"] for r in rows] == ["baseline", "a", "b"]
    code, text, _ = run(capsys, "pareto", "exp", "--tracking-uri", uri, "--format", "json")
    assert [t["trial"] for t in json.loads(text)["trials"]] == ["a", "b"]


def test_cli_pareto_layers_of_one_trial(uri, capsys):
    code, text, _ = run(capsys, "pareto", "exp", "--tracking-uri", uri, "--layers", "a",
                        "--format", "json")
    assert code == 0
    assert json.loads(text)["layers"] == [{"layer": "features.0", "shape": "",
                                           "got": "prune 50% · 8-bit"}]


def test_cli_pareto_plot_writes_png_and_html(uri, tmp_path, capsys):
    code, _, err = run(capsys, "pareto", "exp", "--tracking-uri", uri, "--plot",
                       tmp_path / "front.png")
    assert code == 0 and "front.png" in err and "front.html" in err
    assert (tmp_path / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (tmp_path / "front.html").read_text()
    assert "Pareto front" in html and "plotly" in html.lower()
    # every trial is a point, its hover text naming it and its plan
    assert all(f"{t} (completed)" in html for t in "abc") and "features.0: prune 50%" in html


def test_tracking_uri_from_the_environment(uri, monkeypatch, capsys):
    monkeypatch.setenv("AUTOCOMPRESS_TRACKING_URI", uri)
    assert resolve_tracking_uri() == (uri, "$AUTOCOMPRESS_TRACKING_URI")
    code, text, _ = run(capsys, "pareto", "exp", "--format", "json")
    assert code == 0 and json.loads(text)["tracking_uri"] == uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert resolve_tracking_uri().source == "$AUTOCOMPRESS_TRACKING_URI"  # ours wins
    assert resolve_tracking_uri("sqlite:///x.db").source == "--tracking-uri"


def test_default_tracking_uri_is_absolute_in_the_current_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    location = resolve_tracking_uri(None, "sqlite:///runs/m.db")
    assert location.uri == f"sqlite:///{tmp_path / 'runs' / 'm.db'}"
    assert resolve_tracking_uri().uri == f"sqlite:///{tmp_path / 'mlruns.db'}"
    code, _, err = run(capsys, "pareto", "exp")  # reads only: creates nothing
    assert code == 2 and f"sqlite:///{tmp_path / 'mlruns.db'}" in err
    assert list(tmp_path.iterdir()) == []


def test_search_rejects_unknown_overrides():
    with pytest.raises(ConfigError, match="unknown override"):
        autocompress.search("recipes/quickstart.yaml", epochs=3)


def test_cli_pick_registers_the_chosen_run(uri, tmp_path, capsys, monkeypatch):
    import autocompress.tracking.registry as registry

    calls = []

    def fake_register(run_id, name, alias=None, tags=None, *, uri, budgets=()):
        calls.append((run_id, name, alias, uri))
        return SimpleNamespace(uri=f"models:/{name}@{alias}")

    monkeypatch.setattr(registry, "register", fake_register)
    code, text, _ = run(capsys, "pick", "exp", "--tracking-uri", uri, "--output",
                        tmp_path / "m.acz", "--register", "edge", "--alias", "champion",
                        "--format", "json")
    picked = json.loads(text)
    assert code == 0 and picked["registered"] == "models:/edge@champion"
    assert calls == [(picked["run_id"], "edge", "champion", uri)]
    code, _, err = run(capsys, "pick", "exp", "--tracking-uri", uri, "--output",
                       tmp_path / "n.acz", "--alias", "champion")
    assert code == 2 and "--alias: only with --register NAME" in err
    assert not (tmp_path / "n.acz").exists()

"""Bad CLI invocations print one line naming the problem and exit 2, without a traceback."""

import os
import pickle

import pytest
import torch

from autocompress.cli import main
from autocompress.errors import ConfigError
from autocompress.recipe import Recipe
from autocompress.search.baseline import load_or_train
from autocompress.search.checkpoint import load_state_dict_file
from autocompress.tracking.tracker import SearchTracker
from tests.helpers import QUICKSTART


def run(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.err.strip(), captured.out


def one_line_error(code, err):
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("autocompress: error: ") and "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store holding one search with one Pareto member and its artifact."""
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlruns.db'}"
    tracker = SearchTracker(uri, "exp")
    tracker.start_search("exp", {}, {}, {"accuracy": 0.9, "latency_ms": 1.0, "size_kb": 10.0})
    artifact = root / "model.acz"
    artifact.write_bytes(b"artifact bytes")
    tracker.start_trial("a", {})
    tracker.log_result("a", {"accuracy": 0.9, "latency_ms": 0.5, "size_kb": 5.0,
                             "feasible": 1.0}, step=1)
    tracker.finish_trial("a", "completed", artifact=str(artifact))
    tracker.finish_search([tracker._runs["a"]], [], {"hypervolume": 0.1})
    return uri


def test_pick_writes_the_artifact(store, tmp_path, capsys):
    out = tmp_path / "new" / "picked.acz"
    code, err, _ = run(capsys, "pick", "exp", "--tracking-uri", store, "--output", out)
    assert code == 0, err
    assert out.read_bytes() == b"artifact bytes"


def test_pick_output_a_folder(store, tmp_path, capsys):
    err = one_line_error(*run(capsys, "pick", "exp", "--tracking-uri", store,
                              "--output", tmp_path)[:2])
    assert f"--output {tmp_path}: is a folder" in err


def test_pick_output_under_a_file(store, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "m.acz"
    err = one_line_error(*run(capsys, "pick", "exp", "--tracking-uri", store,
                              "--output", out)[:2])
    assert f"{tmp_path / 'afile'} is a file, not a folder" in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_pick_output_that_cannot_be_written(store, capsys):
    err = one_line_error(*run(capsys, "pick", "exp", "--tracking-uri", store,
                              "--output", "/dev/full")[:2])
    assert "--output /dev/full: cannot write the artifact: No space left on device" in err


def test_pareto_bogus_uri(capsys):
    err = one_line_error(*run(capsys, "pareto", "exp", "--tracking-uri", "bogus://x")[:2])
    assert "tracking URI 'bogus://x': cannot open the MLflow store" in err


@pytest.mark.parametrize("command", ["pareto", "pick"])
def test_reading_commands_create_no_store_nor_folder(tmp_path, capsys, command):
    uri = f"sqlite:///{tmp_path / 'missing' / 'dir' / 'm.db'}"
    extra = ("--output", tmp_path / "out.acz") if command == "pick" else ()
    err = one_line_error(*run(capsys, command, "exp", "--tracking-uri", uri, *extra)[:2])
    assert f"tracking URI {uri!r}: no MLflow store" in err
    assert list(tmp_path.iterdir()) == []


def test_pareto_refuses_a_file_that_is_not_a_store(tmp_path, capsys):
    path = tmp_path / "m.db"
    path.write_bytes(b"")  # an empty file: MLflow would create its tables in it
    err = one_line_error(*run(capsys, "pareto", "exp", "--tracking-uri",
                              f"sqlite:///{path}")[:2])
    assert "no MLflow store" in err
    assert path.read_bytes() == b""


def test_search_with_a_bad_space(tmp_path, capsys):
    (tmp_path / "space.yaml").write_text(
        "layers:\n  - select: {type: Conv2d}\n"
        "    methods: {prune: {ratio: {low: 0.0, high: null}}}\n")
    text = QUICKSTART.read_text()
    recipe = tmp_path / "r.yaml"
    recipe.write_text("\n".join("space: space.yaml" if line.startswith("space:") else line
                                for line in text.splitlines()))
    err = one_line_error(*run(capsys, "search", recipe)[:2])
    assert "space.layers[0].methods.prune.ratio.high: invalid value None" in err


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("evil", "is not a plain state dict that loads safely"),
        ("garbage", "is not a plain state dict that loads safely"),
        ("module", "is not a plain state dict that loads safely"),
        ("lightning", "holds a training checkpoint"),
        ("list", "is not a plain state dict (a mapping of parameter names to tensors)"),
        ("mismatch", "does not fit 'digits_cnn'"),
    ],
)
def test_checkpoint_that_is_not_a_plain_state_dict(tmp_path, content, message):
    path, marker = tmp_path / "ckpt.pt", tmp_path / "pwned"
    objects = {"module": torch.nn.Linear(2, 2),
               "lightning": {"state_dict": {"w": torch.zeros(1)}, "epoch": 3},
               "list": [torch.zeros(1)], "mismatch": {"w": torch.zeros(1)}}
    if content == "evil":
        path.write_bytes(pickle.dumps(_Evil(marker)))
    elif content == "garbage":
        path.write_bytes(b"not a checkpoint")
    else:
        torch.save(objects[content], path)
    recipe = Recipe.from_yaml(QUICKSTART).replace(model={"checkpoint": str(path)})
    with pytest.raises(ConfigError, match="model.checkpoint") as info:
        load_or_train(recipe, tmp_path)
    assert message in str(info.value) and "weights_only" not in str(info.value)
    assert "\n" not in str(info.value)
    assert not marker.exists()  # the malicious pickle ran nothing


def test_a_plain_state_dict_loads(tmp_path):
    path = tmp_path / "ok.pt"
    torch.save(torch.nn.Linear(2, 3).state_dict(), path)
    state = load_state_dict_file(path, "model.checkpoint")
    assert set(state) == {"weight", "bias"} and state["weight"].shape == (3, 2)


def test_pareto_unknown_run_id(store, capsys):
    err = one_line_error(*run(capsys, "pareto", "exp", "--tracking-uri", store,
                              "--run-id", "bogus")[:2])
    assert "--run-id 'bogus': no search run of that id in experiment 'exp'" in err

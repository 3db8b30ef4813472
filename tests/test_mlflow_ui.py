"""The MLflow UI in a real browser shows a search: its parent run, its trials and its plot.

A store holding a small finished search (a parent run, three trial runs, a PNG on the parent)
is written with the project's tracker, ``mlflow server`` serves it on 127.0.0.1, and headless
Chromium (Debian's ``chromium``, driven by Playwright; no browser is downloaded) reads the
experiment page and the parent run's artifacts page. Skipped when Chromium or Playwright is
absent (``.ci/run`` installs both when it can).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EXPERIMENT = "ui-demo"
TRIALS = ({"layers/features.0/prune/ratio": 0.25, "layers/classifier/quantize/bits": 8},
          {"layers/features.0/prune/ratio": 0.5, "layers/classifier/quantize/bits": 4},
          {"layers/features.0/prune/ratio": 0.0, "layers/classifier/quantize/bits": 2})
RESULTS = ({"accuracy": 0.962, "size_kb": 21.4, "latency_ms": 0.21},
           {"accuracy": 0.948, "size_kb": 12.9, "latency_ms": 0.15},
           {"accuracy": 0.901, "size_kb": 9.8, "latency_ms": 0.27})
PLOT_SIZE = (480, 360)  # pixels of the logged PNG

pytestmark = [
    pytest.mark.browser, pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="no Chromium (apt-get install "
                       "chromium): browser tests skip"),
]


@dataclass(frozen=True)
class SearchStore:
    """What the browser should find: the store and the search's ids and names."""

    uri: str
    experiment_id: str
    parent_id: str
    parent_name: str
    child_names: tuple[str, ...]


def _plot(path: Path) -> None:
    """A small quality-vs-size scatter, as a search's front plot would look."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(PLOT_SIZE[0] / 80, PLOT_SIZE[1] / 80), dpi=80)
    ax.scatter([r["size_kb"] for r in RESULTS], [r["accuracy"] for r in RESULTS])
    ax.set(xlabel="size_kb", ylabel="accuracy", title="Pareto front")
    fig.savefig(path, dpi=80)
    plt.close(fig)


def build_store(folder: Path) -> SearchStore:
    """Write a finished three-trial search with the project's tracker; return its ids."""
    from autocompress.tracking import SearchTracker

    tracker = SearchTracker(f"sqlite:///{folder / 'mlruns.db'}", EXPERIMENT)
    tracker.client.set_experiment_tag(tracker.experiment_id, "mlflow.experimentKind",
                                      "custom_model_development")
    parent = tracker.start_search(EXPERIMENT, {"search/trials": len(TRIALS)},
                                  {"recipe.yaml": f"name: {EXPERIMENT}\n"},
                                  {"accuracy": 0.97, "size_kb": 80.0})
    for number, (plan, metrics) in enumerate(zip(TRIALS, RESULTS, strict=True)):
        tracker.start_trial(f"trial{number}", plan)
        tracker.log_result(f"trial{number}", metrics, step=1)
        tracker.finish_trial(f"trial{number}", "completed")
    _plot(folder / "front.png")
    tracker.client.log_artifact(parent, str(folder / "front.png"), "plots")
    tracker.client.set_terminated(parent, "FINISHED")
    runs = tracker.client.search_runs([tracker.experiment_id])
    children = tuple(r.info.run_name for r in runs if r.info.run_id != parent)
    name = next(r.info.run_name for r in runs if r.info.run_id == parent)
    return SearchStore(tracker.uri, tracker.experiment_id, parent, name, children)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def mlflow_server(uri: str, log: Path, timeout: float = 120.0) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 (a free port) over ``uri``; yields its base URL."""
    port = _free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
               str(port), "--backend-store-uri", uri, "--workers", "1"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                  start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while not _up(f"{base}/health"):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)  # the server and its uvicorn worker
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@contextlib.contextmanager
def chromium_page(profile: Path, width: int = 1400, height: int = 900):
    """A page of headless Debian Chromium with a fresh profile (Playwright drives it)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": width, "height": height})
        try:
            yield context.new_page()
        finally:
            context.close()


def open_experiment(page, base: str, store: SearchStore) -> None:
    """The experiment's runs page with the search's row expanded to show its trials."""
    page.goto(f"{base}/#/experiments/{store.experiment_id}/runs")
    page.get_by_text(f"{1 + len(store.child_names)} matching runs").wait_for(timeout=60_000)
    row = page.locator("[role=row]", has_text=store.parent_name).first
    row.locator('button[data-component-id*="runnamecellrenderer"]').first.click()
    page.get_by_text(store.child_names[0], exact=True).wait_for(timeout=30_000)


def open_plot(page, base: str, store: SearchStore) -> int:
    """The parent run's artifacts page on the plot; returns the shown image's pixel width."""
    page.goto(f"{base}/#/experiments/{store.experiment_id}/runs/{store.parent_id}"
              "/artifacts/plots/front.png")
    page.get_by_text("plots/front.png").first.wait_for(timeout=60_000)
    image = page.locator("img[src^='blob:']").first
    image.wait_for(timeout=30_000)
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0",
                           arg=image.element_handle(), timeout=30_000)
    return page.evaluate("(img) => img.naturalWidth", image.element_handle())


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow_ui")
    store = build_store(folder)
    with mlflow_server(store.uri, folder / "server.log") as base:
        yield base, store, folder


def test_experiment_page_shows_the_search_and_its_trials(served):
    base, store, folder = served
    with chromium_page(folder / "profile-runs") as page:
        open_experiment(page, base, store)
        rows = page.locator("[role=row]").all_inner_texts()
        assert any(store.parent_name in row for row in rows)
        for child in store.child_names:
            assert any(child in row for row in rows), f"trial run {child!r} not shown"


def test_parent_run_artifacts_page_shows_the_plot(served):
    base, store, folder = served
    with chromium_page(folder / "profile-plot") as page:
        assert open_plot(page, base, store) == PLOT_SIZE[0]
        assert page.get_by_text("front.png", exact=True).first.is_visible()

"""Re-take the screenshots in docs/images from a finished search (needs Chromium + Playwright).

    python docs/screenshots.py mlflow --tracking-uri sqlite:///mlruns.db --experiment quickstart
    python docs/screenshots.py terminal capture.ansi    # e.g. from `tmux capture-pane -e -p`

``mlflow`` serves the store with ``mlflow server`` on 127.0.0.1 and photographs, in headless
Chromium, the experiment page (the search's run expanded to show its trials) and the search
run's front plot; ``terminal`` renders a captured terminal (ANSI colours) with rich and
photographs it. The browser helpers are the ones tests/test_mlflow_ui.py uses.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
sys.path.insert(0, str(ROOT))

from tests.test_mlflow_ui import (  # noqa: E402
    SearchStore,
    chromium_page,
    mlflow_server,
    open_experiment,
)


def _store(uri: str, experiment: str) -> tuple[SearchStore, str]:
    """The experiment's latest search and its trials, and the path of its front plot."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    parent = next(r for r in runs if r.data.tags.get("autocompress.role") == "search")
    children = tuple(r.info.run_name for r in runs
                     if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id)
    plots = [f.path for folder in ("", "plots", "pareto")
             for f in client.list_artifacts(parent.info.run_id, folder or None)
             if f.path.endswith(".png")]
    store = SearchStore(uri, exp.experiment_id, parent.info.run_id, parent.info.run_name,
                        children)
    return store, (plots[0] if plots else "")


def mlflow_pages(uri: str, experiment: str, out: Path = IMAGES) -> list[Path]:
    """Photograph the experiment page and the search run's plot; return the files."""
    store, plot = _store(uri, experiment)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, \
            mlflow_server(uri, Path(tmp) / "server.log") as base, \
            chromium_page(Path(tmp) / "profile", width=1500, height=820) as page:
        _close_assistant(page, f"{base}/#/experiments/{store.experiment_id}/runs")
        open_experiment(page, base, store)
        page.wait_for_timeout(1500)
        shots = [out / "mlflow_experiment.png"]
        page.screenshot(path=str(shots[0]))
        if plot:
            page.goto(f"{base}/#/experiments/{store.experiment_id}/runs/{store.parent_id}"
                      f"/artifacts/{plot}")
            page.locator("img[src^='blob:']").first.wait_for(timeout=60_000)
            page.wait_for_timeout(1500)
            shots.append(out / "mlflow_plot.png")
            page.screenshot(path=str(shots[1]))
    return shots


def _close_assistant(page, url: str) -> None:
    """Close MLflow's assistant side panel (it stays closed for the profile), if shown."""
    page.goto(url)
    page.wait_for_timeout(4000)
    close = page.locator("[aria-label='Close'], button:has-text('Close')")
    if close.count():
        close.first.click()


def terminal(ansi: Path, out: Path = IMAGES / "progress.png", width: int = 110) -> Path:
    """Render a captured terminal (ANSI escapes kept) as a PNG."""
    from rich.console import Console
    from rich.text import Text

    console = Console(record=True, width=width, force_terminal=True, color_system="truecolor",
                      file=open("/dev/null", "w"))  # noqa: SIM115  (only the record is wanted)
    console.print(Text.from_ansi(ansi.read_text().rstrip() + "\n"))
    with tempfile.TemporaryDirectory() as tmp:
        svg = Path(tmp) / "terminal.svg"
        svg.write_text(console.export_svg(title="autocompress search recipes/quickstart.yaml"))
        with chromium_page(Path(tmp) / "profile", width=1100, height=900) as page:
            page.goto(svg.as_uri())
            page.locator("svg").first.screenshot(path=str(out), omit_background=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: ``mlflow`` or ``terminal`` (see the module's docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    pages = sub.add_parser("mlflow")
    pages.add_argument("--tracking-uri", default="sqlite:///mlruns.db")
    pages.add_argument("--experiment", default="quickstart")
    term = sub.add_parser("terminal")
    term.add_argument("capture", type=Path)
    args = parser.parse_args(argv)
    if args.what == "mlflow":
        from autocompress.tracking.store import normalize_uri

        files = mlflow_pages(normalize_uri(args.tracking_uri), args.experiment)
    else:
        files = [terminal(args.capture)]
    for path in files:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

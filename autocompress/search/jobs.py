"""Submit a search to a Ray cluster as a job, and follow, inspect or stop it.

The recipe and every file it names (search space, checkpoint) travel in the job's
``working_dir``: the smallest folder holding them all. On the cluster the job runs
``autocompress search RECIPE --ray-address auto`` with the given overrides, so the driver runs
on the head node and is the only MLflow writer, exactly as on one machine.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autocompress.errors import ConfigError
from autocompress.recipe import Recipe

# never uploaded: environments, stores and run folders that can be large or private
EXCLUDES = (".git", ".venv", "venv", "__pycache__", "*.pyc", "mlruns", "mlruns.db", "mlartifacts",
            "autocompress_runs", "*.acz", "*.onnx", ".pytest_cache", ".ruff_cache")
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
_MAX_PACKAGE_BYTES = 100 * 2**20


@dataclass(frozen=True)
class JobSpec:
    """What is sent to the cluster: the entrypoint and the files it needs."""

    entrypoint: str
    working_dir: Path
    runtime_env: dict[str, Any]


def job_spec(recipe_path: str | Path, search_args: Sequence[str] = (),
             env: dict[str, str] | None = None) -> JobSpec:
    """The job for ``recipe_path``: working dir, entrypoint (relative paths) and runtime env.

    Args:
        recipe_path: The recipe YAML.
        search_args: Extra ``autocompress search`` options (``--trials 8``, ...).
        env: Environment variables for the job (e.g. ``MLFLOW_TRACKING_TOKEN``).
    """
    path = Path(recipe_path).resolve()
    recipe = Recipe.from_yaml(path)  # validates before anything is sent
    needed = [path, recipe.resolve(recipe.space).resolve()]
    if recipe.model.checkpoint:
        needed.append(recipe.resolve(recipe.model.checkpoint).resolve())
    for file in needed:
        if not file.is_file():
            raise ConfigError(f"submit: {file} is named by the recipe but does not exist")
    root = Path(os.path.commonpath([str(p.parent) for p in needed]))
    if root == Path(root.anchor) or root == Path.home():
        files = ", ".join(map(str, needed))
        raise ConfigError(f"submit: the recipe and the files it names ({files}) meet only at "
                          f"{root}; keep them under one project folder")
    _check_size(root)
    rel = path.relative_to(root).as_posix()
    args = ["autocompress", "search", rel, "--ray-address", "auto", "--quiet", *search_args]
    runtime_env: dict[str, Any] = {"working_dir": str(root), "excludes": list(EXCLUDES)}
    runtime_env["env_vars"] = {"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return JobSpec(shlex.join(args), root, runtime_env)


def _check_size(root: Path) -> None:
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in EXCLUDES]
        for name in filenames:
            total += (Path(dirpath) / name).stat().st_size
            if total > _MAX_PACKAGE_BYTES:
                raise ConfigError(
                    f"submit: the recipe's folder {root} holds over "
                    f"{_MAX_PACKAGE_BYTES // 2**20} MiB; keep the recipe, its space and its "
                    "checkpoint in a small folder (large weights belong in shared storage)")


def client(address: str):
    """A Ray Job Submission client for ``http://HEAD:8265`` (clear error when unreachable)."""
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # noqa: BLE001  (connection errors come in many types)
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        hint = ""
        if "401" in str(exc) or "nauthori" in str(exc):
            hint = " (the cluster uses token auth: set RAY_AUTH_MODE=token and its token)"
        raise ConfigError(f"--address: cannot reach the Ray job API at {address!r}: "
                          f"{text}{hint}") from None


def submit(address: str, spec: JobSpec, submission_id: str | None = None) -> str:
    """Submit the job; returns its submission id."""
    return client(address).submit_job(entrypoint=spec.entrypoint, runtime_env=spec.runtime_env,
                                      submission_id=submission_id,
                                      metadata={"autocompress": "search"})


def status(address: str, job_id: str) -> dict[str, Any]:
    """The job's status, message, entrypoint, start and end times."""
    info = _info(address, job_id)
    return {"job_id": job_id, "status": str(info.status.value), "message": info.message or "",
            "entrypoint": info.entrypoint, "start_time": info.start_time,
            "end_time": info.end_time}


def logs(address: str, job_id: str) -> str:
    """The job's whole log so far."""
    _info(address, job_id)
    return client(address).get_job_logs(job_id)


def stop(address: str, job_id: str) -> bool:
    """Ask the cluster to stop the job; True if it was running."""
    _info(address, job_id)
    return bool(client(address).stop_job(job_id))


def follow(address: str, job_id: str, out=None, poll_s: float = 1.0) -> str:
    """Stream the job's log to ``out`` until it ends; returns its final status."""
    out = out or sys.stdout
    c = client(address)

    async def tail() -> None:
        async for chunk in c.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    asyncio.run(tail())
    while (state := str(c.get_job_status(job_id).value)) not in TERMINAL:
        time.sleep(poll_s)  # the log stream can end a moment before the status does
    return state


def _info(address: str, job_id: str):
    c = client(address)
    try:
        return c.get_job_info(job_id)
    except RuntimeError as exc:
        known = [j.submission_id for j in c.list_jobs() if j.submission_id]
        raise ConfigError(f"job {job_id!r} not found on {address}; known: "
                          f"{', '.join(known[-10:]) or 'none'} ({str(exc).splitlines()[0]})"
                          ) from None

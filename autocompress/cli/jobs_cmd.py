"""``autocompress submit`` and ``autocompress jobs``: searches as Ray jobs on a cluster."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
FORWARDED = (("trials", "--trials"), ("concurrency", "--concurrency"), ("sampler", "--sampler"),
             ("seed", "--seed"), ("tracking_uri", "--tracking-uri"),
             ("experiment", "--experiment"), ("storage", "--storage"))


def add_parsers(sub: Any) -> None:
    """Register ``submit`` and ``jobs`` on the main parser's subcommands."""
    s = sub.add_parser("submit", help="submit a search to a Ray cluster as a job")
    s.add_argument("recipe", help="recipe YAML; it and the files it names are uploaded")
    _address(s)
    s.add_argument("--follow", action="store_true", help="stream the job's log until it ends")
    s.add_argument("--trials", type=int)
    s.add_argument("--concurrency", type=int)
    s.add_argument("--sampler")
    s.add_argument("--seed", type=int)
    s.add_argument("--budget", action="append", default=[], metavar="EXPR")
    s.add_argument("--tracking-uri", help="an MLflow tracking server the cluster can reach")
    s.add_argument("--experiment")
    s.add_argument("--storage", help="Tune storage on the cluster (shared FS or cloud URI)")
    s.add_argument("--submission-id", help="a job id of your own (default: Ray's)")
    s.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment variable for the job (repeatable)")
    s.set_defaults(func=_submit)

    j = sub.add_parser("jobs", help="status, logs or stop of a submitted search")
    j.add_argument("action", choices=("status", "logs", "stop", "follow"))
    j.add_argument("job_id")
    _address(j)
    j.add_argument("--format", choices=("text", "json"), default="text")
    j.set_defaults(func=_jobs)


def _address(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=os.environ.get("RAY_API_SERVER_ADDRESS")
                   or os.environ.get("RAY_ADDRESS") or DEFAULT_ADDRESS,
                   help="the cluster's job API, http://HEAD:8265 (default $RAY_ADDRESS or "
                        f"{DEFAULT_ADDRESS})")


def _search_args(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    for name, flag in FORWARDED:
        value = getattr(args, name)
        if value is not None:
            out += [flag, str(value)]
    for budget in args.budget:
        out += ["--budget", budget]
    return out


def _env(pairs: list[str]) -> dict[str, str]:
    from autocompress.errors import invalid

    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise invalid("--env", pair, "KEY=VALUE")
        env[key] = value
    return env


def _submit(args: argparse.Namespace) -> int:
    from autocompress.search import jobs

    spec = jobs.job_spec(args.recipe, _search_args(args), _env(args.env))
    job_id = jobs.submit(args.address, spec, args.submission_id)
    print(job_id)
    print(f"submitted to {args.address}: {spec.entrypoint} (working dir {spec.working_dir})",
          file=sys.stderr)
    if not args.follow:
        print(f"follow it with: autocompress jobs follow {job_id} --address {args.address}",
              file=sys.stderr)
        return 0
    return _exit_code(jobs.follow(args.address, job_id))


def _jobs(args: argparse.Namespace) -> int:
    from autocompress.search import jobs

    if args.action == "status":
        info = jobs.status(args.address, args.job_id)
        if args.format == "json":
            print(json.dumps(info))
        else:
            print(f"{info['job_id']}: {info['status']} {info['message']}".rstrip())
        return 0
    if args.action == "logs":
        print(jobs.logs(args.address, args.job_id), end="")
        return 0
    if args.action == "stop":
        stopped = jobs.stop(args.address, args.job_id)
        print(f"{args.job_id}: {'stop requested' if stopped else 'was not running'}")
        return 0
    return _exit_code(jobs.follow(args.address, args.job_id))


def _exit_code(state: str) -> int:
    print(f"job finished: {state}", file=sys.stderr)
    return 0 if state == "SUCCEEDED" else 1

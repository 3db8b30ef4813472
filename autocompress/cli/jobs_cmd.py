"""``autocompress submit`` and ``autocompress jobs``: searches as Ray jobs on a cluster."""

from __future__ import annotations

import argparse
import json
import sys

from autocompress.cli.parser import forwarded_search_args


def _env(pairs: list[str]) -> dict[str, str]:
    from autocompress.errors import invalid

    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise invalid("--env", pair, "KEY=VALUE")
        env[key] = value
    return env


def submit(args: argparse.Namespace) -> int:
    """Submit the recipe's search as a Ray job (``--follow``: stream its log until it ends)."""
    from autocompress.search import jobs

    spec = jobs.job_spec(args.recipe, forwarded_search_args(args), _env(args.env))
    job_id = jobs.submit(args.address, spec, args.submission_id)
    print(job_id)
    print(f"submitted to {args.address}: {spec.entrypoint} (working dir {spec.working_dir})",
          file=sys.stderr)
    if not args.follow:
        print(f"follow it with: autocompress jobs follow {job_id} --address {args.address}",
              file=sys.stderr)
        return 0
    return _exit_code(jobs.follow(args.address, job_id))


def jobs(args: argparse.Namespace) -> int:
    """Status, logs, stop or follow of a submitted search."""
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

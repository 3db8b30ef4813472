#!/usr/bin/env bash
# A local multi-node Ray cluster (start | stop | status [options]); see local_cluster.py --help.
# Uses the repository's virtual environment when there is one, else $PYTHON or python3.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-$here/../.venv/bin/python}"
[ -x "$python" ] || python="$(command -v python3)"
exec "$python" "$here/local_cluster.py" "$@"

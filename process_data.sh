#!/usr/bin/env bash
# dataset/vids/<name>.mp4 -> dataset/<name>/   (see `bash process_data.sh --help`)
# A thin wrapper over `python -m data_util.runner`; uses the project's .venv when there is one.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${PYTHON:-$here/.venv/bin/python}"
[ -x "$py" ] || py="$(command -v python3)"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" -m data_util.runner "$@"

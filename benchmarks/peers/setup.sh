#!/usr/bin/env bash
# Create (or update) the peers' own virtual environment at <repo>/.venv-peers.
#
# d3rlpy 2.8.1 pins gymnasium==1.0.0 while ray[rllib]==2.60 pins gymnasium==1.2.2, so the d3rlpy
# peers cannot live in the main environment. Idempotent: rerunning it only installs what is missing.
# torch goes first (the CPU wheel torch==2.13.0; a bare `torch` requirement pulled later by d3rlpy
# could otherwise resolve to a multi-GB CUDA build), then the rest of requirements.txt.
#
#   bash benchmarks/peers/setup.sh            # uses python3 (3.10+) from PATH
#   PYTHON=python3.11 bash benchmarks/peers/setup.sh
#   FASTQ_PEERS_VENV=/elsewhere bash benchmarks/peers/setup.sh   (policy.py reads the same variable)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${FASTQ_PEERS_VENV:-$repo/.venv-peers}"
python="${PYTHON:-python3}"
req="$here/requirements.txt"
stamp="$venv/.peers-install-stamp"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating $venv with $("$python" --version 2>&1)"
    "$python" -m venv "$venv"
fi
vpy="$venv/bin/python"

if [[ -f "$stamp" ]] && cmp -s "$stamp" "$req"; then
    echo "$venv is up to date with $req"
    exit 0
fi

torch_pin="$(grep -E '^torch==' "$req")"
# A torch that is already installed at the pinned version is kept (never replaced by a CUDA build).
if ! "$vpy" -c "import sys, torch; sys.exit(torch.__version__.split('+')[0] != '${torch_pin#torch==}')" 2>/dev/null; then
    "$vpy" -m pip install "$torch_pin"
fi
"$vpy" -m pip install -r "$req"
"$vpy" -c "import d3rlpy, torch; print('d3rlpy', d3rlpy.__version__, 'torch', torch.__version__)"
cp "$req" "$stamp"

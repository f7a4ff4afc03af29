#!/usr/bin/env bash
# `make demo`: the seed's 18-cell grid (sweeps/demo.yaml) trained on this
# machine, then the seed's three questions answered from the results.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${ABLATE_BIN_DIR:-build/bin}
mkdir -p runs

# Real English text, offline: the GNU Collaborative International Dictionary
# of English (Debian's dict-gcide), cleaned into text8 format.
if [[ ! -s runs/gcide.text8 ]]; then
  zcat /usr/share/dictd/gcide.dict.dz | "$bin/ablate-worker" data prepare - runs/gcide.text8
fi

# Two single-thread workers share the two cores; rerunning resumes. At the end
# `local` prints validation bpc averaged by cell, by layer norm and by
# initializer: the seed's three questions.
"$bin/ablate" local sweeps/demo.yaml --workers 2 --threads 1 --db runs/demo.db
"$bin/ablate" report demo --db runs/demo.db -o runs/demo.html
echo
echo "Database: runs/demo.db (ablate results demo --db runs/demo.db --group-by ...)"
echo "Report:   runs/demo.html"

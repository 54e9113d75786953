#!/usr/bin/env bash
# Install the wheels carried to the lent GPU machine (see README "GPU checks"): every file under .device-wheels/ is
# collected in /tmp/parts (a warm machine keeps it between calls), split wheels are reassembled, and all go into
# /tmp/site with pip --target. Calls that carry one part each just collect; the first call that finds a whole
# wheel set installs. Source it: it exports PYTHONPATH=/tmp/site:$PWD.
mkdir -p /tmp/parts /tmp/whl
find .device-wheels -type f -exec cp {} /tmp/parts/ \; 2>/dev/null  # carried one folder (bundle) per call
for w in /tmp/parts/*.part00; do
  [[ -e $w ]] || continue
  base="${w%.part00}"
  cat "$base".part* > "/tmp/whl/$(basename "$base")"
done
cp /tmp/parts/*.whl /tmp/whl/ 2>/dev/null
if ls /tmp/whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site /tmp/whl/*.whl 2>&1 | tail -2
fi
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1

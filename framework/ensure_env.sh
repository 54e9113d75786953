# Sourced by run_all_measurements.sh and tests/run_tests.sh: sets PYTHON to an interpreter with deploybench.
#
# Order: an existing ./.venv; else a python3 that already has the deploybench distribution installed;
# else a new ./.venv with the project installed in editable mode. The venv is reinstalled when
# pyproject.toml or the extras change. DEPLOYBENCH_EXTRAS picks the extras: "cpu" by default,
# "gpu" where nvidia-smi is found (onnxruntime-gpu and tensorrt; the two onnxruntime builds conflict).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="${DEPLOYBENCH_EXTRAS:-$(command -v nvidia-smi >/dev/null 2>&1 && echo gpu || echo cpu)}${DEPLOYBENCH_EXTRA_EXTRAS:+,$DEPLOYBENCH_EXTRA_EXTRAS}"
venv="${DEPLOYBENCH_VENV:-$root/.venv}"
if [[ ! -x "$venv/bin/python" ]] && python3 -c "import importlib.metadata as m; m.version('deploybench')" >/dev/null 2>&1; then
  PYTHON=python3
else
  if [[ ! -x "$venv/bin/python" ]]; then
    echo "deploybench: creating a virtual environment in $venv" >&2
    python3 -m venv "$venv" || return 1
  fi
  # The stamp holds pyproject.toml's hash and the extras installed; reinstall only when the file changed or
  # an extra is missing, and then install the union so the two scripts do not undo each other.
  stamp="$venv/.deploybench-install-stamp"
  hash="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
  stamped_hash="" stamped_extras=""
  [[ -f "$stamp" ]] && read -r stamped_hash stamped_extras <"$stamp"
  [[ "${stamped_hash:-}" == "$hash" ]] || stamped_extras=""
  stamped_extras="${stamped_extras//[\[\]]/}"  # stamps of earlier versions wrote "[cpu]"
  union="$(tr ',' '\n' <<<"${stamped_extras:-},$extras" | sed '/^$/d' | sort -u | paste -sd, -)"
  if [[ "$union" != "${stamped_extras:-}" ]]; then
    echo "deploybench: installing the project with extras [$union] into $venv (first run: a few minutes)" >&2
    "$venv/bin/python" -m pip install -q -e "$root[$union]" || return 1
    echo "$hash $union" >"$stamp"
  fi
  PYTHON="$venv/bin/python"
fi
export PYTHON

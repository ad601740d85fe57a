#!/usr/bin/env bash
# The annotation tools whose own code the integration tests drive, pinned, each in a virtual
# environment of its own (their Django and Qt stacks must not meet the project's dependencies):
# Label Studio in $I2F_ANNOTATION_TOOLS/label-studio, X-AnyLabeling in $I2F_ANNOTATION_TOOLS/x-anylabeling.
# The tests read the same variable. A tool already there at its version is not installed again.
set -euo pipefail
tools=${I2F_ANNOTATION_TOOLS:?set I2F_ANNOTATION_TOOLS to the directory for the tools and their environments}

install() {  # directory name, distribution, version
  local venv=$tools/$1
  if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('$2') != '$3')" 2> /dev/null; then
    python -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet "$2==$3"
  fi
}

install label-studio label-studio 1.23.2
install x-anylabeling x-anylabeling-cvhub 4.2.1

#!/usr/bin/env bash
# Install what sparsedd needs on a fresh machine. `--test` adds the test tools and the
# headless browser used by the report test.
#
# Python packages go into a virtual environment, never into the system Python (stock Debian
# has no `python` and its pip refuses system installs, PEP 668): `.venv` in the repository,
# created here, or the active one ($VIRTUAL_ENV), which `.venv` then links to. Either way the
# README's commands run `.venv/bin/...`.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

packages=()
[ -d /usr/share/datasets/fashion-mnist ] || packages+=(dataset-fashion-mnist)
if [ "$want_test" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  packages+=(chromium)
fi
# Debian ships venv's pip bootstrap (ensurepip) in python3-venv; needed only to create .venv.
if [ -L .venv ] && [ ! -e .venv ]; then
  echo "setup: .venv links to a virtual environment that is gone; remove .venv and run again" >&2
  exit 1
fi
if [ ! -e .venv ] && [ -z "${VIRTUAL_ENV:-}" ]; then
  if ! command -v python3 >/dev/null 2>&1; then
    packages+=(python3 python3-venv)
  elif ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    packages+=(python3-venv)
  fi
fi
if [ "${#packages[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${packages[@]}" >/dev/null
  else
    echo "setup: please install with root rights: apt-get install ${packages[*]}" >&2
  fi
fi

if [ -e .venv ]; then
  echo "setup: installing into .venv"
elif [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
  ln -s "$VIRTUAL_ENV" .venv
  echo "setup: installing into the active virtual environment $VIRTUAL_ENV (linked as .venv)"
else
  python3 -m venv .venv
  echo "setup: created .venv"
fi
if [ ! -x .venv/bin/python ]; then
  echo "setup: .venv/bin/python is missing; remove .venv and run this script again" >&2
  exit 1
fi

if [ "$want_test" = 1 ]; then
  .venv/bin/python -m pip install -q -e '.[test]'
else
  .venv/bin/python -m pip install -q -e .
fi
echo "setup: done; run sparsedd as .venv/bin/sparsedd (or activate: source .venv/bin/activate)"

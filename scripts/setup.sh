#!/usr/bin/env bash
# Install what sparsedd needs on a fresh machine. `--test` adds the test tools and the
# headless browser used by the report test.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

packages=()
[ -d /usr/share/datasets/fashion-mnist ] || packages+=(dataset-fashion-mnist)
if [ "$want_test" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  packages+=(chromium)
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

if [ "$want_test" = 1 ]; then
  python -m pip install -q -e '.[test]'
else
  python -m pip install -q -e .
fi

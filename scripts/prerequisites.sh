#!/usr/bin/env bash
# Sourced by scripts/test.sh before anything is built: makes sure the programs the tests need are on
# this machine, and installs the missing ones. As root it installs them (Debian packages with apt,
# cargo-nextest with cargo, playwright-core with npm); otherwise it stops at once with the exact
# command to run, instead of failing after a long build.
#
#   cc, make            LAME (mp3lame-sys) compiles from its bundled C sources
#   python3 venv        scripts/test-env.sh puts SecantusDB and the SMTP sink in a virtualenv
#   chromium, node/npm  the web page's browser test (gateway/tests/browser.rs)
#   rabbitmq-server     tests that need a broker configured otherwise (a short consumer_timeout)
#                       start a private node of their own (platform::testing::PrivateRabbit)
#   cargo-nextest       the test runner
#   cargo-deny          the dependency licence check (deny.toml)
#   playwright-core     the browser test's driver (npm ci in gateway/web-tests)
set -euo pipefail
PREREQ_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

prereq_missing_debian_packages() {
  local missing=()
  command -v cc >/dev/null || missing+=(gcc libc6-dev)
  command -v make >/dev/null || missing+=(make)
  command -v git >/dev/null || missing+=(git)
  command -v python3 >/dev/null || missing+=(python3)
  if command -v python3 >/dev/null; then
    # Debian's python3 needs python3-venv for `python3 -m venv` to create pip too.
    python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  fi
  [ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || missing+=(chromium)
  command -v node >/dev/null || missing+=(nodejs)
  [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || command -v rabbitmq-server >/dev/null ||
    missing+=(rabbitmq-server)
  command -v npm >/dev/null || missing+=(npm)
  echo "${missing[@]:-}"
}

prereq_fail() {
  echo "prerequisites: $1" >&2
  echo "prerequisites: run, then start the tests again:" >&2
  echo "    $2" >&2
  exit 1
}

prereq_install() {
  local packages
  packages=$(prereq_missing_debian_packages)
  if [ -n "$packages" ]; then
    if [ "$(id -u)" -ne 0 ]; then
      prereq_fail "missing Debian packages: $packages" \
        "sudo apt-get update && sudo apt-get install -y --no-install-recommends $packages"
    fi
    echo "prerequisites: installing $packages (apt)" >&2
    apt-get update -qq
    # shellcheck disable=SC2086 # a list of package names
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages >/dev/null
  fi

  if ! cargo nextest --version >/dev/null 2>&1; then
    echo "prerequisites: installing cargo-nextest (cargo install, a few minutes)" >&2
    cargo install --locked cargo-nextest
  fi
  if ! cargo deny --version >/dev/null 2>&1; then
    echo "prerequisites: installing cargo-deny (cargo install, a few minutes)" >&2
    cargo install --locked cargo-deny --version 0.20.2
  fi

  local web_tests="$PREREQ_ROOT/gateway/web-tests"
  if [ ! -f "$web_tests/node_modules/playwright-core/package.json" ]; then
    echo "prerequisites: installing playwright-core (npm ci in gateway/web-tests)" >&2
    (cd "$web_tests" && npm ci --no-audit --no-fund --loglevel=error) ||
      prereq_fail "npm ci in $web_tests failed" "cd $web_tests && npm ci"
  fi
}

prereq_install

#!/usr/bin/env bash
# MongoDB queries per second with 1,000 SSE streams open on one job (idle, then one event a
# second), against a gateway started by the integration-test harness on the test services
# (scripts/test.sh starts SecantusDB; RabbitMQ and MariaDB are the machine's, isolated names).
# A measurement, not a test: prints a table; the figures are MongoDB's serverStatus opcounters
# (query + getmore) and the gateway's event_store_reads_total.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
exec scripts/test.sh -p gateway --run-ignored only --no-capture \
  -E 'test(mongodb_queries_with_a_thousand_streams_on_one_job)' "$@"

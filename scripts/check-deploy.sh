#!/usr/bin/env bash
# Checks the Prometheus files under deploy/ with promtool: the scrape
# configuration, the alerting rules and the rules' unit tests. (The Go test
# TestIntegrationDeployMetrics checks the dashboard's and the rules'
# queries against the metrics a running instance exports.)
# Installs promtool from Debian's prometheus package when it is missing
# (apt-get: as root, or with sudo).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v promtool >/dev/null; then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  echo "check-deploy.sh: installing promtool (apt-get install prometheus)"
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # The package starts a Prometheus server where a service manager runs;
  # only its promtool is wanted.
  $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
command -v promtool >/dev/null || { echo "check-deploy.sh: promtool is not installed" >&2; exit 1; }

promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/alerts.yml
(cd deploy/prometheus && promtool test rules alerts_test.yml)
echo "check-deploy.sh: OK"

#!/usr/bin/env bash
# Prometheus for the native run, started by supervisord (deploy/local/supervisord.conf): it scrapes the four
# processes and RabbitMQ (observability/prometheus/prometheus.native.yml), evaluates the alert rules and keeps
# its data under var/prometheus. Exits quietly when Prometheus is not installed, so `make run` works without it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
listen=${PROMETHEUS_LISTEN:-127.0.0.1:9090}

if ! command -v prometheus >/dev/null 2>&1; then
  echo "prometheus     | not installed, not started (deploy/local/ensure-prometheus.sh installs it)"
  exit 0
fi
mkdir -p "$root/var/prometheus"
# The projectors supervisord starts (PROJECTORS, numbered from 0, metrics on 9102, 9112, ...), for the
# projector job's file_sd_configs.
targets=""
for ((n = 0; n < ${PROJECTORS:-1}; n++)); do
  targets+="${targets:+, }\"127.0.0.1:91${n}2\""
done
echo "[{\"targets\": [$targets]}]" > "$root/var/prometheus/projectors.json.new"
mv "$root/var/prometheus/projectors.json.new" "$root/var/prometheus/projectors.json"
args=(
  --config.file="$root/observability/prometheus/prometheus.native.yml"
  --storage.tsdb.path="$root/var/prometheus"
  --storage.tsdb.retention.time=2d
  --web.listen-address="$listen"
  --web.enable-lifecycle      # POST /-/reload after editing the rules
)
if [ "${LOG_FORMAT:-auto}" = json ]; then
  exec prometheus "${args[@]}" --log.format=json
fi
# The console shape of the other processes: every line prefixed with the process name. Prometheus itself
# replaces this shell, so supervisord's signals reach it directly.
exec > >(sed -u 's/^/prometheus     | /') 2>&1
exec prometheus "${args[@]}"

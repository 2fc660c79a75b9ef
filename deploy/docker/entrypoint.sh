#!/bin/sh
# The image's entrypoint. It runs the container's command ("$@") unchanged.
#
# By default it simply execs the command: the process becomes PID 1 and receives SIGTERM directly, exactly as
# if there were no entrypoint.
#
# With RESTART_ON_SYNC=1 (set only by the kind overlay, for Tilt) it keeps the command running as a child and
# restarts it whenever the trigger file is touched, which Tilt's live_update does after syncing services/.
# The relay and the projector then pick up new code without a new image; gunicorn would reload on SIGHUP, but
# one mechanism for the four processes is simpler. A restarted container starts from the image again.
set -eu

if [ "${RESTART_ON_SYNC:-0}" != "1" ]; then
    exec "$@"
fi

trigger="${RESTART_TRIGGER_FILE:-/tmp/.restart-proc}"
child=0

stop() {
    # Forward the stop signal and leave with the child's status.
    kill -TERM "$child" 2>/dev/null || true
    status=0
    wait "$child" || status=$?
    exit "$status"
}
trap stop TERM INT

touch "$trigger"
while :; do
    # The trigger's time before the command starts: a sync that lands while it starts still restarts it.
    stamp=$(date -r "$trigger" +%s%N)
    "$@" &
    child=$!
    while kill -0 "$child" 2>/dev/null; do
        if [ "$(date -r "$trigger" +%s%N 2>/dev/null || echo "$stamp")" != "$stamp" ]; then
            echo "cqrs-entrypoint: $trigger changed, restarting: $*" >&2
            kill -TERM "$child" 2>/dev/null || true
            wait "$child" || true
            continue 2
        fi
        sleep 0.5
    done
    # The command ended by itself: leave with its status, so the orchestrator sees the crash.
    status=0
    wait "$child" || status=$?
    exit "$status"
done

#!/bin/sh
# Starts a node of the three-node cluster with the cluster's shared Erlang cookie: nodes, and the CLI tools
# that talk to them (the health check, rabbitmq-queues), must all hold the same one. The cookie file is where
# rabbitmq-server and the CLI tools read it (the rabbitmq user's home), written before the server starts.
# With arguments, runs them instead of the server (a CLI command against the cluster).
set -eu
: "${RABBITMQ_ERLANG_COOKIE:?the cluster needs RABBITMQ_ERLANG_COOKIE}"
cookie="$HOME/.erlang.cookie"
if [ "$(cat "$cookie" 2>/dev/null)" != "$RABBITMQ_ERLANG_COOKIE" ]; then
  # A node that ran alone before left a cookie of its own, read-only as Erlang writes it: replace it.
  rm -f "$cookie"
  (umask 077 && printf '%s' "$RABBITMQ_ERLANG_COOKIE" > "$cookie")
  chmod 400 "$cookie"
fi
# The server and the CLI tools read the file; the variable has done its job.
unset RABBITMQ_ERLANG_COOKIE
if [ "$#" -gt 0 ]; then
  exec "$@"
fi
exec rabbitmq-server

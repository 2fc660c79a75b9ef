#!/bin/sh
# Once the three nodes run: every quorum queue gets a member on every node. The queues were declared when the
# first node booted alone (definitions.json), with that node as their only member, and quorum queues do not
# grow by themselves when nodes join. `grow` adds the missing members and is a no-op when nothing is missing,
# so this runs again safely after a restart.
set -eu
for node in rabbit@rabbitmq-2 rabbit@rabbitmq-3; do
  rabbitmq-queues --node rabbit@rabbitmq grow "$node" all --vhost-pattern '.*' --queue-pattern '.*'
done
rabbitmq-queues --node rabbit@rabbitmq quorum_status read-service.projector.p0 --vhost cqrs

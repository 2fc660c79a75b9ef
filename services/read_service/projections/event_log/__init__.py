"""The event log as the read side sees it: one place for every read of the write side's `events` table.

- `rows`: the log's columns and how a row becomes an event (or, when it is none of this contract, a
  dead-letter record): the one way, whichever table or database the row comes from;
- `logs`: the two logs a rebuild (and verify) can read, behind one interface: the replica table of the read
  database, and the optional event store;
- `replica`: what the projector's replication fallback reads from the replica table, and its cursor;
- `subscription`: the one query for the state of the subscription that feeds the replica table, and its
  status as the fallback and the API show it; `replication_admin`: the operator's `replication_status` and
  `resubscribe_events`, which puts the subscription back after its slot lost its WAL;
- `connect`: the one way to open a read-only connection to a database other than Django's.
"""

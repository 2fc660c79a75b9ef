"""Reporting: a second, independent subscriber of the events, with a read model of its own.

The projector keeps the read models the account API serves; this subscriber keeps another one, daily totals
per currency (money deposited, withdrawn and transferred, accounts opened, the largest movement), from the
same events, through a queue of its own bound to `cqrs.events` and a broker user of its own. It shows what
happens when a consumer arrives after events exist: it must read history from the log before it can follow
live traffic, and switch between the two without a gap and without counting an event twice.

- `models`: its tables (the read model, the events it counted, its subscription's state);
- `counting`: one batch of events counted in one transaction, each event at most once;
- `history`: the log as this subscriber reads it, the replicated `events` table in commit order;
- `subscriber`: the loop, catch-up from the log then live from the queue;
- `api`: GET /api/reports/daily and /api/reports/subscription on read-service.
"""

"""Every SQL statement of the apply step and its handlers, in one module.

The statements name tables without a schema, always: the rebuild (rebuild.py) runs this same code with
`search_path` set to its shadow schema, so an unqualified name is what sends its writes to the shadow tables
and nothing else (tests/integration/read/test_apply_sql.py holds every statement here to that). The tables
themselves are declared next to the models (models.py).
"""

# ---------------------------------------------------------------------------------------- the handlers

OPEN_ACCOUNT = """
    WITH account AS (
        INSERT INTO account_view
               (account_id, owner, currency, balance, status, version, opened_at, updated_at)
        VALUES (%(account_id)s, %(owner)s, %(currency)s, 0, 'open', %(version)s, %(at)s, %(at)s)
        RETURNING currency
    )
    INSERT INTO currency_totals AS t (currency, total_balance, accounts, open_accounts)
    SELECT currency, 0, 1, 1 FROM account
    ON CONFLICT (currency) DO UPDATE SET accounts = t.accounts + 1, open_accounts = t.open_accounts + 1
"""

# `count(*)` is 0 when the account is not projected or not open.
CLOSE_ACCOUNT = """
    WITH account AS (
        UPDATE account_view SET status = 'closed', version = %(version)s, updated_at = %(at)s
         WHERE account_id = %(account_id)s AND status = 'open'
        RETURNING currency
    ), total AS (
        UPDATE currency_totals t SET open_accounts = t.open_accounts - 1
          FROM account WHERE t.currency = account.currency
    )
    SELECT count(*) FROM account
"""

# Movements in one statement, as if each ran alone in turn: each account's row is updated once
# (by the sum of its deltas, to its last version), each line's balance_after is the account's new balance
# minus the deltas after it (a running sum in version order), each currency's total is updated once.
# Kept as the WITH items alone, so the apply step can put a batch's last run into the same statement as the
# batch's bookkeeping (`account` holds one row per projected account).
MOVE_MONEY_CTES = """
    moves AS (
        SELECT * FROM unnest(%(account_ids)s::uuid[], %(versions)s::int[], %(kinds)s::text[],
                             %(amounts)s::numeric[], %(deltas)s::numeric[], %(counterparties)s::uuid[],
                             %(transfer_ids)s::uuid[], %(references)s::text[], %(at)s::timestamptz[])
               AS m(account_id, version, kind, amount, delta, counterparty, transfer_id, reference,
                    occurred_at)
    ), per_account AS (
        SELECT DISTINCT ON (account_id) account_id, version, occurred_at,
               sum(delta) OVER (PARTITION BY account_id) AS delta
          FROM moves ORDER BY account_id, version DESC
    ), account AS (
        UPDATE account_view v
           SET balance = v.balance + p.delta, version = p.version, updated_at = p.occurred_at
          FROM per_account p WHERE v.account_id = p.account_id
        RETURNING v.account_id, v.currency, v.balance - p.delta AS balance_before, p.delta
    ), line AS (
        INSERT INTO statement_lines
               (account_id, version, kind, amount, balance_after, counterparty, transfer_id, reference,
                occurred_at)
        SELECT m.account_id, m.version, m.kind, m.amount,
               a.balance_before + sum(m.delta) OVER (PARTITION BY m.account_id ORDER BY m.version),
               m.counterparty, m.transfer_id, m.reference, m.occurred_at
          FROM moves m JOIN account a ON a.account_id = m.account_id
    ), total AS (
        UPDATE currency_totals t SET total_balance = t.total_balance + c.delta
          FROM (SELECT currency, sum(delta) AS delta FROM account GROUP BY currency) c
         WHERE t.currency = c.currency
    )
"""
MOVE_MONEY = f"WITH {MOVE_MONEY_CTES} SELECT count(*) FROM account"

# ------------------------------------------------------------------------------------ the apply step

# The rows every apply transaction writes, whatever its accounts: the batch's progress (`projector_state`) and
# the currency totals. Statements of different shapes take them in different orders (a combined last run
# writes the progress before the totals, an opening in mid-batch writes a total first), so two appliers
# (projectors on their partitions, a fallback beside them) could each hold one and wait for the other: a
# deadlock PostgreSQL breaks after deadlock_timeout (1 s) by failing one batch. So every apply transaction
# takes this lock after its accounts' locks and before any of those rows, and holds it to its commit.
SHARED_ROWS_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('cqrs.projection.shared_rows', 0))"

# Three statements in one round trip (psycopg2 sends them as one simple query). Each takes its own snapshot,
# so the versions are read after the locks are held and see everything committed before.
LOCK_AND_READ = f"""
    SELECT count(pg_advisory_xact_lock(k))
      FROM (SELECT DISTINCT hashtextextended(a::text, 0) AS k
              FROM unnest(%(accounts)s::uuid[]) AS a ORDER BY k) AS keys;
    {SHARED_ROWS_LOCK};
    SELECT a.id,
           coalesce((SELECT max(version) FROM applied_events WHERE aggregate_id = a.id), 0),
           EXISTS (SELECT FROM pending_events WHERE aggregate_id = a.id)
      FROM unnest(%(accounts)s::uuid[]) AS a(id)
"""

# Accounts whose lowest parked version is already next (or older): nothing that arrives would drain them,
# since draining follows the apply of the version before. A rebuild's swap can leave this behind (the shadow
# applied an event the live table still parks the successor of).
READY_TO_DRAIN = """
    SELECT p.aggregate_id
      FROM (SELECT aggregate_id, min(version) AS first_parked FROM pending_events GROUP BY 1) AS p
     WHERE p.first_parked <= 1 + coalesce((SELECT max(a.version) FROM applied_events a
                                            WHERE a.aggregate_id = p.aggregate_id), 0)
     LIMIT %s
"""

# The parked events of an account up to the next version, taken out to be applied (older ones are copies
# of events applied since they were parked).
TAKE_PARKED = """
    DELETE FROM pending_events WHERE aggregate_id = %s AND version <= %s
    RETURNING version, envelope, path
"""

PARK = """
    INSERT INTO pending_events
           (event_id, aggregate_id, version, position, type, occurred_at, envelope, path, received_at)
    VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, clock_timestamp())
    ON CONFLICT DO NOTHING
"""

TRACK = """
    INSERT INTO applied_events
           (event_id, aggregate_id, version, position, type, occurred_at, applied_at, path)
    VALUES (%s, %s, %s, %s, %s, %s, clock_timestamp(), %s)
"""

# The tracking rows not written yet, the counters for /api/projection, and a NOTIFY per changed account
# (PostgreSQL sends it at commit).
PROGRESS_CTES = """
    tracked AS (
        INSERT INTO applied_events
               (event_id, aggregate_id, version, position, type, occurred_at, applied_at, path)
        SELECT event_id, aggregate_id, version, position, type, occurred_at, clock_timestamp(), path
          FROM unnest(%(event_ids)s::uuid[], %(aggregate_ids)s::uuid[], %(tracked_versions)s::int[],
                      %(positions)s::bigint[], %(types)s::text[], %(occurred)s::timestamptz[],
                      %(paths)s::text[])
               AS t(event_id, aggregate_id, version, position, type, occurred_at, path)
    ), progress AS (
        INSERT INTO projector_state AS s (id, mode, events_applied, last_event_at, last_applied_at)
        VALUES (1, %(mode)s, %(applied)s, %(newest)s, clock_timestamp())
        ON CONFLICT (id) DO UPDATE SET
            events_applied = s.events_applied + EXCLUDED.events_applied,
            last_event_at = greatest(s.last_event_at, EXCLUDED.last_event_at),
            last_applied_at = EXCLUDED.last_applied_at
    )
"""
NOTIFY = "SELECT count(pg_notify(%(channel)s, a)) FROM unnest(%(accounts)s::text[]) AS a"
RECORD_PROGRESS = f"WITH {PROGRESS_CTES} {NOTIFY}"
# With the batch's last run of money events: data-modifying WITH items all run, each exactly once.
MOVE_MONEY_AND_RECORD_PROGRESS = (
    f"WITH {MOVE_MONEY_CTES}, {PROGRESS_CTES} SELECT (SELECT count(*) FROM account), ({NOTIFY})"
)

RECORD_DEAD_LETTER = """
    INSERT INTO dead_letters
           (message_id, event_type, routing_key, reason, detail, body, dead_lettered_at)
    VALUES (%s, %s, %s, %s, %s, %s, clock_timestamp())
"""

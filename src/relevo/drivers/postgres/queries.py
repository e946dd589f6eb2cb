"""Every SQL statement the driver runs, written once per schema.

Rows are ordered by (due, seq): `due` is the publish time (or a delay's end, or a nack's
time, which puts a nacked message behind those already waiting) and `seq` breaks ties in
publish order. A row is ready when nobody holds it (`locked_until` null) and its due time
has come; claiming it sets a lease (`locked_until`, `locked_by`) that the holder's keeper
extends while handlers run. Every settlement checks `locked_by`, so a consumer whose
lease ran out (and whose message went to someone else) changes nothing.
"""

from __future__ import annotations

from importlib import resources

SCHEMA_VERSION = 1
"""The version of schema.sql; recorded in <schema>.schema_version."""


def quote(identifier: str) -> str:
    """A double-quoted SQL identifier (the settings model only admits [a-z0-9_] names)."""
    return '"' + identifier.replace('"', '""') + '"'


class Queries:
    """The statements of one schema, as plain strings with psycopg placeholders."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.channel = f"relevo.{schema}"  # NOTIFY channel; the payload is the queue name
        s = quote(schema)
        m = f"{s}.messages"
        self.ddl = resources.files(__package__).joinpath("schema.sql").read_text()
        self.ddl = self.ddl.replace("{schema}", s)
        self.lock = "SELECT pg_advisory_xact_lock(hashtext(%(name)s))"
        self.version = f"SELECT max(version) FROM {s}.schema_version"
        self.record_version = f"INSERT INTO {s}.schema_version (version) VALUES (%(version)s)"
        # index_message_ids: ready rows by message ID, for peek(after=ID) and remove(ids).
        # Partial, like messages_ready: a claim's leased row version adds no entry, so
        # publishes (and nacks, releases) pay for it and claims do not. Within schema
        # version 1: drivers without the setting work with it as without it.
        self.index_ids = f"""
            CREATE INDEX IF NOT EXISTS messages_ready_id
            ON {m} (id) WHERE locked_until IS NULL"""
        self.listen = f"LISTEN {quote(self.channel)}"
        self.notify = "SELECT pg_notify(%(channel)s, %(queue)s)"

        self.declare = f"""
            INSERT INTO {s}.queues (name, max_length) VALUES (%(queue)s, %(max_length)s)
            ON CONFLICT (name) DO UPDATE SET max_length = EXCLUDED.max_length"""
        # A bounded queue's publishers take turns (the queue's row lock, held until their
        # commit), so the count they read stays true until their rows are in.
        self.room = f"""
            SELECT q.max_length - (SELECT count(*) FROM {m} WHERE queue = q.name
                                   AND (locked_until IS NOT NULL OR due <= now()))
            FROM {s}.queues AS q WHERE q.name = %(queue)s FOR UPDATE OF q"""
        self.exists = f"SELECT 1 FROM {s}.queues WHERE name = %(queue)s"

        # Arrays go as binary parameters (%(x)b): psycopg's text array dumper escapes every
        # element with a regular expression, which cost more Python time per batch than
        # building the rows did.
        # One statement per batch: rows in order, nothing stored for an undeclared queue
        # (no row comes back then), and one NOTIFY, sent when the transaction commits.
        self.publish = f"""
            WITH stored AS (
                INSERT INTO {m} (queue, id, body, headers, attempts, due)
                SELECT %(queue)s, b.id, b.body, b.headers, coalesce(b.attempts, 0),
                       greatest(coalesce(to_timestamp(b.due), now()), now())
                FROM unnest(%(ids)b::text[], %(bodies)b::bytea[], %(headers)b::bytea[],
                            %(attempts)b::int[], %(dues)b::float8[])
                     WITH ORDINALITY AS b(id, body, headers, attempts, due, n)
                WHERE EXISTS (SELECT 1 FROM {s}.queues WHERE name = %(queue)s)
                ORDER BY b.n
                RETURNING 1
            )
            SELECT pg_notify(%(channel)s, %(queue)s)
            FROM (SELECT count(*) AS n FROM stored) AS c WHERE c.n > 0"""

        # The claim: SKIP LOCKED lets any number of consumers claim side by side, each
        # taking rows no one else is taking; the partial index messages_ready serves it.
        # The picked rows are updated through the primary key (`= ANY(ARRAY(...))`): as
        # a join, the planner hashed them and read the whole table for a queue of
        # thousands, since that looked cheaper than a hundred index probes.
        # The same statement deletes the rows acked since the last claim: one round trip
        # per batch. It commits without waiting for the WAL flush (synchronous_commit
        # off, for this transaction only): should the server crash, a claim it forgets
        # leaves its rows ready, and an ack it forgets delivers its message again. Either
        # way nothing is lost, and a batch costs no fsync of its own.
        self.claim = f"""
            WITH quick AS (SELECT set_config('synchronous_commit', 'off', true)),
            acked AS (
                DELETE FROM {m} WHERE seq = ANY(%(acks)b::bigint[]) AND locked_by = %(token)s
            ),
            picked AS (
                SELECT seq FROM {m}
                WHERE queue = %(queue)s AND locked_until IS NULL AND due <= now()
                ORDER BY due, seq
                LIMIT %(limit)s
                FOR UPDATE SKIP LOCKED
            ),
            claimed AS (
                UPDATE {m} AS m
                SET locked_until = now() + %(lease_s)s * interval '1 second',
                    locked_by = %(token)s
                FROM quick WHERE m.seq = ANY(ARRAY(SELECT seq FROM picked))
                RETURNING m.seq, m.id, m.body, m.headers, m.attempts, m.due
            )
            SELECT seq, id, body, headers, attempts FROM claimed ORDER BY due, seq"""
        # Seconds (as the database's clock sees them) until the next delayed row is due.
        self.next_due = f"""
            SELECT extract(epoch FROM min(due) - now())::float8 FROM {m}
            WHERE queue = %(queue)s AND locked_until IS NULL AND due > now()"""

        self.ack = f"""
            WITH quick AS (SELECT set_config('synchronous_commit', 'off', true))
            DELETE FROM {m} USING quick
            WHERE seq = ANY(%(seqs)b::bigint[]) AND locked_by = %(token)s"""
        # nack: attempts + bump, due now (the tail) or later (a delayed retry), in one
        # UPDATE: the delayed copy and the removal of the original are the same write.
        # `m.seq = ANY(...)` lets the rows be found through the primary key; the join
        # alone read the whole table.
        self.nack = f"""
            UPDATE {m} AS m
            SET locked_until = NULL, locked_by = NULL, attempts = m.attempts + %(bump)s,
                due = greatest(coalesce(to_timestamp(r.due), now()), now())
            FROM unnest(%(seqs)b::bigint[], %(dues)b::float8[]) AS r(seq, due)
            WHERE m.seq = ANY(%(seqs)b::bigint[]) AND m.seq = r.seq
              AND m.locked_by = %(token)s"""
        # release: back where it was, no attempt counted.
        self.release = f"""
            UPDATE {m} SET locked_until = NULL, locked_by = NULL
            WHERE seq = ANY(%(seqs)s) AND locked_by = %(token)s"""
        # close: everything still held by a subscription goes back; `held` had handlers.
        self.give_back = f"""
            UPDATE {m}
            SET locked_until = NULL, locked_by = NULL,
                attempts = attempts + (seq = ANY(%(held)s))::int
            WHERE queue = %(queue)s AND locked_by = %(token)s"""

        self.extend = f"""
            UPDATE {m} SET locked_until = now() + %(lease_s)s * interval '1 second'
            WHERE seq = ANY(%(seqs)s) AND locked_by = %(token)s"""
        # Leases that ran out: their holder died (or stalled). Back in place, +1 attempt.
        self.reclaim = f"""
            WITH expired AS (
                SELECT seq FROM {m}
                WHERE queue = %(queue)s AND locked_until < now()
                LIMIT %(limit)s
                FOR UPDATE SKIP LOCKED
            )
            UPDATE {m} AS m
            SET locked_until = NULL, locked_by = NULL, attempts = m.attempts + 1
            WHERE m.seq = ANY(ARRAY(SELECT seq FROM expired))"""

        self.heartbeat = f"""
            INSERT INTO {s}.consumers (token, queue) VALUES (%(token)s, %(queue)s)
            ON CONFLICT (token) DO UPDATE SET seen_at = now()"""
        self.leave = f"DELETE FROM {s}.consumers WHERE token = %(token)s"
        self.forget_stale = f"""
            DELETE FROM {s}.consumers
            WHERE queue = %(queue)s AND seen_at < now() - %(stale_s)s * interval '1 second'"""

        self.info = f"""
            SELECT
              (SELECT count(*) FROM {m} WHERE queue = q.name
                 AND locked_until IS NULL AND due <= now()),
              (SELECT count(*) FROM {m} WHERE queue = q.name AND locked_until IS NOT NULL),
              (SELECT count(*) FROM {m} WHERE queue = q.name
                 AND locked_until IS NULL AND due > now()),
              (SELECT extract(epoch FROM min(due))::float8 FROM {m} WHERE queue = q.name
                 AND locked_until IS NULL AND due > now()),
              (SELECT count(*) FROM {s}.consumers WHERE queue = q.name
                 AND seen_at > now() - %(stale_s)s * interval '1 second')
            FROM {s}.queues AS q WHERE q.name = %(queue)s"""

        # peek, remove and purge touch only ready rows: nobody holds them and their time
        # has come (the protocol's "ready"; delayed rows wait for their time untouched).
        # peek's `after` row is looked up by ID among the unclaimed rows (through
        # messages_ready_id when index_message_ids built it) and, only when not found
        # there, among the queue's rows in flight (messages_leased): a page goes on after
        # a row a consumer took meanwhile.
        self.peek = f"""
            SELECT id, body, headers, attempts FROM {m}
            WHERE queue = %(queue)s AND locked_until IS NULL AND due <= now()
              AND (%(after)s::text IS NULL OR (due, seq) > (
                    (SELECT due, seq FROM {m}
                     WHERE id = %(after)s AND queue = %(queue)s AND locked_until IS NULL
                     ORDER BY seq LIMIT 1)
                    UNION ALL
                    (SELECT due, seq FROM {m}
                     WHERE id = %(after)s AND queue = %(queue)s AND locked_until IS NOT NULL
                     ORDER BY seq LIMIT 1)
                    LIMIT 1))
            ORDER BY due, seq
            LIMIT %(limit)s"""
        self.remove = f"""
            DELETE FROM {m}
            WHERE queue = %(queue)s AND id = ANY(%(ids)s) AND locked_until IS NULL
              AND due <= now()"""
        self.purge = f"""
            DELETE FROM {m}
            WHERE queue = %(queue)s AND locked_until IS NULL AND due <= now()"""

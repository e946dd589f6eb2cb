"""Every SQL statement the driver runs, written once per schema.

Waiting messages are rows of `messages`, ordered by (due, seq): `due` is the publish
time (or a delay's end, or a nack's time, which puts a nacked message behind those
already waiting) and `seq` breaks ties in publish order. A row is ready once its due
time has come. A claim deletes the rows it takes and stores them, in the same
statement, as one row of `leases` (the batch's messages as arrays, a lease end that the
holder's keeper extends, and `open`, the seqs not settled yet, null while that is all
of them). An ack only takes its seq out of `open`, and the lease row goes when `open`
is empty: a message costs one row write to claim and nothing of its own to ack. A
nack, a release, an expired lease or a close puts messages back into `messages` under
their own seq. Every settlement checks the lease's token, so a consumer whose lease ran
out (and whose messages went back to the queue) changes nothing.
"""

from __future__ import annotations

from importlib import resources

SCHEMA_VERSION = 2
"""The version of schema.sql; recorded in <schema>.schema_version."""


def quote(identifier: str) -> str:
    """A double-quoted SQL identifier (the settings model only admits [a-z0-9_] names)."""
    return '"' + identifier.replace('"', '""') + '"'


def _back(messages: str, source: str, bump: str) -> str:
    """Put the open messages of the lease rows `source` (a CTE) back into `messages`,
    in place (own seq and due), each with `attempts + bump` (an SQL expression over
    `u.seq`). ON CONFLICT: a message already back stays as it is."""
    return f"""
            INSERT INTO {messages} (seq, queue, id, body, headers, attempts, due)
            OVERRIDING SYSTEM VALUE
            SELECT u.seq, l.queue, u.id, u.body, u.headers, u.attempts + {bump}, u.due
            FROM {source} AS l CROSS JOIN LATERAL
                 unnest(l.seqs, l.ids, l.bodies, l.headers, l.attempts, l.dues)
                 AS u(seq, id, body, headers, attempts, due)
            WHERE u.seq = ANY(coalesce(l.open, l.seqs))
            ON CONFLICT (seq) DO NOTHING"""


class Queries:
    """The statements of one schema, as plain strings with psycopg placeholders."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.channel = f"relevo.{schema}"  # NOTIFY channel; the payload is the queue name
        s = quote(schema)
        m = f"{s}.messages"
        leases = f"{s}.leases"
        self.ddl = resources.files(__package__).joinpath("schema.sql").read_text()
        self.ddl = self.ddl.replace("{schema}", s)
        self.lock = "SELECT pg_advisory_xact_lock(hashtext(%(name)s))"
        self.version = f"SELECT max(version) FROM {s}.schema_version"
        self.record_version = f"INSERT INTO {s}.schema_version (version) VALUES (%(version)s)"
        # Version 1 kept a message in flight in its own row, leased in place. Its rows in
        # flight go back counting the attempt (their holders are from before the upgrade),
        # and the lease columns and their indexes go. Its first tables had no max_length
        # (its drivers added the column at start): added here.
        self.upgrade_from_1 = f"""
            ALTER TABLE {s}.queues ADD COLUMN IF NOT EXISTS max_length integer;
            UPDATE {m} SET attempts = attempts + 1 WHERE locked_until IS NOT NULL;
            DROP INDEX IF EXISTS {s}.messages_ready;
            DROP INDEX IF EXISTS {s}.messages_leased;
            DROP INDEX IF EXISTS {s}.messages_ready_id;
            DROP INDEX IF EXISTS {s}.messages_id;
            ALTER TABLE {m} DROP COLUMN locked_until, DROP COLUMN locked_by"""
        # index_message_ids: waiting rows by message ID, for peek(after=ID) and
        # remove(ids); publishes pay for it, claims do not.
        self.index_ids = f"CREATE INDEX IF NOT EXISTS messages_id ON {m} (id)"
        self.listen = f"LISTEN {quote(self.channel)}"
        self.notify = "SELECT pg_notify(%(channel)s, %(queue)s)"

        self.declare = f"""
            INSERT INTO {s}.queues (name, max_length) VALUES (%(queue)s, %(max_length)s)
            ON CONFLICT (name) DO UPDATE SET max_length = EXCLUDED.max_length"""
        in_flight = f"""(SELECT coalesce(sum(cardinality(coalesce(open, seqs))), 0)::bigint
                         FROM {leases} WHERE queue = q.name)"""
        # A bounded queue's publishers take turns (the queue's row lock, held until their
        # commit), so the count they read stays true until their rows are in.
        self.room = f"""
            SELECT q.max_length
                   - (SELECT count(*) FROM {m} WHERE queue = q.name AND due <= now())
                   - {in_flight}
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
        # taking rows no one else is taking; messages_due serves it. The picked rows are
        # deleted through the primary key (`= ANY(ARRAY(...))`): as a join, the planner
        # hashed them and read the whole table for a queue of thousands, since that
        # looked cheaper than a hundred index probes. They leave `messages` and enter
        # their lease row in the same statement, so a message is always in one place.
        # The same statement writes the acks since the last claim: lease rows whose
        # every message is settled (`done`) go, others lose their acked seqs from `open`.
        # It commits without waiting for the WAL flush (synchronous_commit off, for this
        # transaction only): should the server crash, a claim it forgets leaves its rows
        # in `messages` (delivered again), and an ack it forgets delivers its message
        # again. Nothing is lost either way, and a batch costs no fsync of its own.
        # The lease's id is the subscription's random pick, not a sequence's: a server
        # that forgot a claim could hand its sequence's next value out again, and the
        # late settlements of the forgotten lease would then reach a new one.
        self.claim = f"""
            WITH quick AS (SELECT set_config('synchronous_commit', 'off', true)),
            done AS (
                DELETE FROM {leases} WHERE id = ANY(%(done)b::bigint[]) AND token = %(token)s
            ),
            acked AS (
                UPDATE {leases}
                SET open = ARRAY(SELECT x FROM unnest(coalesce(open, seqs)) AS x
                                 WHERE x <> ALL(%(acks)b::bigint[]))
                WHERE id = ANY(%(partial)b::bigint[]) AND token = %(token)s
            ),
            taken AS (
                DELETE FROM {m} WHERE seq = ANY(ARRAY(
                    SELECT seq FROM {m}
                    WHERE queue = %(queue)s AND due <= now()
                    ORDER BY due, seq
                    LIMIT %(limit)s
                    FOR UPDATE SKIP LOCKED))
                RETURNING seq, id, body, headers, attempts, due
            ),
            lease AS (
                INSERT INTO {leases}
                    (id, queue, token, until, open, seqs, ids, bodies, headers, attempts,
                     dues)
                SELECT %(lease)s, %(queue)s, %(token)s,
                       now() + %(lease_s)s * interval '1 second',
                       NULL, array_agg(seq), array_agg(id), array_agg(body),
                       array_agg(headers), array_agg(attempts), array_agg(due)
                FROM taken HAVING count(*) > 0
                RETURNING id
            )
            SELECT (SELECT id FROM lease), seq, id, body, headers, attempts
            FROM taken WHERE (SELECT true FROM quick)
            ORDER BY due, seq"""
        # Seconds (as the database's clock sees them) until the next delayed row is due.
        self.next_due = f"""
            SELECT extract(epoch FROM min(due) - now())::float8 FROM {m}
            WHERE queue = %(queue)s AND due > now()"""

        # Settlements of the leases the claim does not write (those with a nack or a
        # release, and all of them once the subscription stops claiming). `old` reads
        # each lease row as it is now, locked: a message goes back only while its seq is
        # still open there, so a settlement sent twice (after a lost reply) stores
        # nothing twice, and one that lost its lease (reclaimed) stores nothing at all.
        # A nack goes back with `attempts + 1` at the tail (or delayed to :due), a
        # release in place with no attempt counted. It commits synchronously, unlike
        # the claim: a lease row goes with its batch's last ack, so a nack the server
        # forgot in a crash would go with it. Once it is on disk, so is every claim
        # before it, and a crash can only forget claims and acks written after it.
        self.settle = f"""
            WITH old AS (
                SELECT id, queue, open, seqs, ids, bodies, headers, attempts, dues
                FROM {leases}
                WHERE id = ANY(%(leases)b::bigint[]) AND token = %(token)s
                FOR UPDATE
            ),
            rest AS (
                SELECT id, ARRAY(SELECT x FROM unnest(coalesce(open, seqs)) AS x
                                 WHERE x <> ALL(%(settled)b::bigint[])) AS open
                FROM old
            ),
            kept AS (
                UPDATE {leases} AS l SET open = r.open FROM rest AS r
                WHERE l.id = r.id AND cardinality(r.open) > 0
            ),
            gone AS (
                DELETE FROM {leases} AS l USING rest AS r
                WHERE l.id = r.id AND cardinality(r.open) = 0
            )
            INSERT INTO {m} (seq, queue, id, body, headers, attempts, due)
            OVERRIDING SYSTEM VALUE
            SELECT u.seq, l.queue, u.id, u.body, u.headers, u.attempts + b.bump,
                   CASE WHEN b.keep THEN u.due
                        ELSE greatest(coalesce(to_timestamp(b.due), now()), now()) END
            FROM old AS l CROSS JOIN LATERAL
                 unnest(l.seqs, l.ids, l.bodies, l.headers, l.attempts, l.dues)
                 AS u(seq, id, body, headers, attempts, due)
            JOIN unnest(%(back)b::bigint[], %(bumps)b::int[], %(dues)b::float8[],
                        %(keep)b::bool[]) AS b(seq, bump, due, keep) ON b.seq = u.seq
            WHERE u.seq = ANY(coalesce(l.open, l.seqs))
            ON CONFLICT (seq) DO NOTHING"""
        # close: every lease the subscription still has goes, its open messages back in
        # place; `held` had handlers (one attempt more).
        self.give_back = f"""
            WITH mine AS (
                DELETE FROM {leases} WHERE queue = %(queue)s AND token = %(token)s
                RETURNING queue, open, seqs, ids, bodies, headers, attempts, dues
            ){_back(m, "mine", "(u.seq = ANY(%(held)s))::int")}"""

        self.extend = f"""
            UPDATE {leases} SET until = now() + %(lease_s)s * interval '1 second'
            WHERE id = ANY(%(leases)s) AND token = %(token)s"""
        # Leases that ran out: their holder died (or stalled). Back in place, +1 attempt.
        # Counts the leases taken (a full batch: there may be more) and messages put back.
        self.reclaim = f"""
            WITH expired AS (
                DELETE FROM {leases} WHERE id = ANY(ARRAY(
                    SELECT id FROM {leases}
                    WHERE queue = %(queue)s AND until < now()
                    LIMIT %(limit)s
                    FOR UPDATE SKIP LOCKED))
                RETURNING queue, open, seqs, ids, bodies, headers, attempts, dues
            ),
            back AS ({_back(m, "expired", "1")}
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM expired), (SELECT count(*) FROM back)"""

        self.heartbeat = f"""
            INSERT INTO {s}.consumers (token, queue) VALUES (%(token)s, %(queue)s)
            ON CONFLICT (token) DO UPDATE SET seen_at = now()"""
        self.leave = f"DELETE FROM {s}.consumers WHERE token = %(token)s"
        self.forget_stale = f"""
            DELETE FROM {s}.consumers
            WHERE queue = %(queue)s AND seen_at < now() - %(stale_s)s * interval '1 second'"""

        self.info = f"""
            SELECT
              (SELECT count(*) FROM {m} WHERE queue = q.name AND due <= now()),
              {in_flight},
              (SELECT count(*) FROM {m} WHERE queue = q.name AND due > now()),
              (SELECT extract(epoch FROM min(due))::float8 FROM {m} WHERE queue = q.name
                 AND due > now()),
              (SELECT count(*) FROM {s}.consumers WHERE queue = q.name
                 AND seen_at > now() - %(stale_s)s * interval '1 second')
            FROM {s}.queues AS q WHERE q.name = %(queue)s"""

        # peek, remove and purge touch only ready rows (the protocol's "ready"; delayed
        # rows wait for their time untouched). peek's `after` row is looked up by ID in
        # `messages` (through messages_id when index_message_ids built it) and, only when
        # not found there, among the queue's leases: a page goes on after a message a
        # consumer took meanwhile.
        self.peek = f"""
            SELECT id, body, headers, attempts FROM {m}
            WHERE queue = %(queue)s AND due <= now()
              AND (%(after)s::text IS NULL OR (due, seq) > (
                    (SELECT due, seq FROM {m}
                     WHERE id = %(after)s AND queue = %(queue)s
                     ORDER BY seq LIMIT 1)
                    UNION ALL
                    (SELECT u.due, u.seq FROM {leases} AS l CROSS JOIN LATERAL
                            unnest(l.ids, l.dues, l.seqs) AS u(id, due, seq)
                     WHERE l.queue = %(queue)s AND u.id = %(after)s
                     ORDER BY u.seq LIMIT 1)
                    LIMIT 1))
            ORDER BY due, seq
            LIMIT %(limit)s"""
        self.remove = f"""
            DELETE FROM {m}
            WHERE queue = %(queue)s AND id = ANY(%(ids)s) AND due <= now()"""
        self.purge = f"DELETE FROM {m} WHERE queue = %(queue)s AND due <= now()"

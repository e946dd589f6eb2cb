-- schema.sql: the tables of one relevo schema, version 2. Run in one transaction under
-- an advisory lock, so that drivers starting together do not race each other.
-- {schema} is the quoted schema name.

CREATE SCHEMA IF NOT EXISTS {schema};

-- The version of these tables; a driver refuses a schema newer than it knows.
CREATE TABLE IF NOT EXISTS {schema}.schema_version (
    version     integer     NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- Declared queues: publishing to a name not here is QueueNotFound. max_length: the
-- bound of a queue declared with one (ready + in flight), null for none.
CREATE TABLE IF NOT EXISTS {schema}.queues (
    name        text        PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    max_length  integer
);

-- Messages waiting for a consumer: ready once due has come, delayed while it is ahead.
-- A claim moves its rows into one row of `leases`; nothing here is in flight.
CREATE TABLE IF NOT EXISTS {schema}.messages (
    seq           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue         text        NOT NULL,
    id            text        NOT NULL,
    body          bytea       NOT NULL,
    headers       bytea,                      -- msgpack map; null when there are none
    attempts      integer     NOT NULL DEFAULT 0,  -- failed deliveries so far
    due           timestamptz NOT NULL DEFAULT now()  -- order of delivery, and delays
);

-- The claim: the oldest due rows of one queue, O(log n) however many are waiting.
CREATE INDEX IF NOT EXISTS messages_due ON {schema}.messages (queue, due, seq);

-- Messages in flight: one row per claimed batch, holding the batch's messages (as
-- arrays, in the claim's order) until every one of them is settled. `open` lists the
-- seqs not settled yet (null while all of them are open); a nack, a release or a
-- reclaim puts a message back into `messages` under its own seq. `until` is the lease,
-- extended by the holder's keeper; when it runs out (the holder died) the open messages
-- go back with one attempt more.
CREATE TABLE IF NOT EXISTS {schema}.leases (
    id        bigint      PRIMARY KEY,        -- random, picked by the claiming subscription
    queue     text        NOT NULL,
    token     text        NOT NULL,           -- the holding subscription
    until     timestamptz NOT NULL,
    open      bigint[],                       -- null: all of seqs
    seqs      bigint[]    NOT NULL,
    ids       text[]      NOT NULL,
    bodies    bytea[]     NOT NULL,
    headers   bytea[]     NOT NULL,
    attempts  integer[]   NOT NULL,
    dues      timestamptz[] NOT NULL
);
-- A batch's arrays are compressed with lz4 where the server has it: a lease row of
-- small messages then fits in its page, where uncompressed (or with the slower default
-- compression) it took out-of-line TOAST chunks and more of the claim's time.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = '{schema}.leases'::regclass AND attname = 'bodies'
                     AND attcompression = 'l') THEN  -- once: ALTER locks the table
        EXECUTE 'ALTER TABLE {schema}.leases
             ALTER COLUMN seqs SET COMPRESSION lz4, ALTER COLUMN ids SET COMPRESSION lz4,
             ALTER COLUMN bodies SET COMPRESSION lz4, ALTER COLUMN headers SET COMPRESSION lz4,
             ALTER COLUMN attempts SET COMPRESSION lz4, ALTER COLUMN dues SET COMPRESSION lz4';
    END IF;
EXCEPTION WHEN feature_not_supported OR syntax_error OR undefined_column THEN
    NULL;  -- built without lz4, or before PostgreSQL 14: the default compression
END
$$;

-- Reclaim and the in-flight count: a queue's leases, the expired ones first.
CREATE INDEX IF NOT EXISTS leases_until ON {schema}.leases (queue, until);

-- No index on id by default: peek(after=ID) and remove(ids) read the queue's rows. The
-- index_message_ids setting builds messages_id (queries.py) for them.

-- Attached consumers, refreshed by their lease keeper; info() counts the live ones.
CREATE TABLE IF NOT EXISTS {schema}.consumers (
    token      text        PRIMARY KEY,
    queue      text        NOT NULL,
    seen_at    timestamptz NOT NULL DEFAULT now()
);

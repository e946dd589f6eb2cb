-- schema.sql: the tables of one relevo schema, version 1. Run in one transaction under
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
ALTER TABLE {schema}.queues ADD COLUMN IF NOT EXISTS max_length integer;

-- Every stored message. A row is ready when locked_until is null and due has come,
-- in flight while locked_until is set (a consumer's lease), delayed while due is ahead.
CREATE TABLE IF NOT EXISTS {schema}.messages (
    seq           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue         text        NOT NULL,
    id            text        NOT NULL,
    body          bytea       NOT NULL,
    headers       bytea,                      -- msgpack map; null when there are none
    attempts      integer     NOT NULL DEFAULT 0,  -- failed deliveries so far
    due           timestamptz NOT NULL DEFAULT now(),  -- order of delivery, and delays
    locked_until  timestamptz,                -- lease end while a consumer holds it
    locked_by     text                        -- the holding subscription's token
);

-- The claim: the oldest due rows of one queue that nobody holds. The partial index
-- holds only unclaimed rows, so a claim reads O(log n) entries however many are in flight.
CREATE INDEX IF NOT EXISTS messages_ready
    ON {schema}.messages (queue, due, seq) WHERE locked_until IS NULL;

-- Reclaim: leases that ran out (their worker died), found without a scan.
CREATE INDEX IF NOT EXISTS messages_leased
    ON {schema}.messages (queue, locked_until) WHERE locked_until IS NOT NULL;

-- No index on id by default: peek(after=ID) and remove(ids) read the queue's rows. The
-- index_message_ids setting builds messages_ready_id (queries.py) for them, at a
-- fifth more server time per publish statement.

-- Attached consumers, refreshed by their lease keeper; info() counts the live ones.
CREATE TABLE IF NOT EXISTS {schema}.consumers (
    token      text        PRIMARY KEY,
    queue      text        NOT NULL,
    seen_at    timestamptz NOT NULL DEFAULT now()
);

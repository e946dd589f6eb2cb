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

-- peek(after=ID) and remove(ids): ready rows found by message ID, not by reading the
-- queue. Partial, like messages_ready: a claim's leased row version adds no entry, so
-- publishes (and nacks, releases) pay for it and claims do not. Added within version 1
-- (older drivers work with it as they did without): IF NOT EXISTS builds it at the
-- first start on a database made by an earlier relevo.
CREATE INDEX IF NOT EXISTS messages_ready_id
    ON {schema}.messages (id) WHERE locked_until IS NULL;

-- Attached consumers, refreshed by their lease keeper; info() counts the live ones.
CREATE TABLE IF NOT EXISTS {schema}.consumers (
    token      text        PRIMARY KEY,
    queue      text        NOT NULL,
    seen_at    timestamptz NOT NULL DEFAULT now()
);

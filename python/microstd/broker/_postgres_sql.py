"""The PostgreSQL side of `postgresql://` durable streams: tables, functions, statements.

Tables (``<t>`` is the broker's table name, default ``microstd_broker``):

- ``<t>_streams``: a stream's subjects (and the regular expression that
  matches them), limits, and running ``last_seq`` / ``msgs`` / ``bytes``.
  A publish bumps ``last_seq`` under the row's lock, so sequences are
  contiguous per stream and commit in sequence order.
- ``<t>_log``: each retained message, ``(stream, seq)``, with its envelope.
  Retention deletes the oldest rows only, so a stream's rows are always
  ``last_seq - msgs + 1 .. last_seq``.
- ``<t>_durables``: a durable's pattern (and its regular expression) and
  how many messages it gave up on.
- ``<t>_pending``: the table queue. A publish inserts one row per durable
  whose pattern matches; a row is ready when ``deadline <= now()`` (never
  delivered: ``-infinity``; nacked: its redelivery time; delivered: the end
  of its ``ack_wait``, so an unacked delivery becomes ready again by
  itself). Members take ready rows with ``FOR UPDATE SKIP LOCKED``, so
  concurrent members never wait for each other nor take the same row. An
  ack deletes the row.

Functions (plpgsql, so a publish or a fetch is one round trip):
``<t>_publish`` (retain + fan out + NOTIFY), ``<t>_evict`` (retention) and
``<t>_fetch`` (take ready rows, say when the next one is due).

Times are the server's clock (``now()``), shared by every process; only
member liveness (``<t>_members``, shared with core queue groups) uses the
clients' wall clocks, as it does for queue groups.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["DDL", "SCHEMA_VERSION", "Statements", "subjects_regex"]

#: Version of the durable tables (schema entry ``broker-streams:<t>``).
SCHEMA_VERSION = 1

# The characters a PostgreSQL (ARE) regular expression gives a meaning to. A topic
# token may hold any of them (only whitespace and empty tokens are refused).
_META = frozenset("\\^$.|?*+()[]{}")


_WILDCARDS = {"*": "[^.]+", ">": ".+"}


def _part(part: str) -> str:
    wildcard = _WILDCARDS.get(part)
    if wildcard is not None:
        return wildcard
    return "".join("\\" + c if c in _META else c for c in part)


def subjects_regex(patterns: Sequence[str]) -> str:
    """A PostgreSQL regular expression matching the topics any of `patterns` matches."""
    alternatives = ["\\.".join(_part(t) for t in p.split(".")) for p in patterns]
    return "^(?:" + "|".join(alternatives) + ")$"


def DDL(t: str) -> str:
    """The durable tables and functions of broker table `t` (an identifier)."""
    return f"""
CREATE TABLE {t}_streams (
    name text PRIMARY KEY,
    subjects text[] NOT NULL,
    subjects_re text NOT NULL,
    max_age double precision,
    max_count bigint,
    max_bytes bigint,
    last_seq bigint NOT NULL DEFAULT 0,
    msgs bigint NOT NULL DEFAULT 0,
    bytes bigint NOT NULL DEFAULT 0
);
CREATE TABLE {t}_log (
    stream text NOT NULL,
    seq bigint NOT NULL,
    topic text NOT NULL,
    data bytea NOT NULL,
    size bigint NOT NULL,
    time timestamptz NOT NULL,
    PRIMARY KEY (stream, seq)
);
CREATE TABLE {t}_durables (
    stream text NOT NULL,
    name text NOT NULL,
    pattern text NOT NULL,
    pattern_re text NOT NULL,
    dead_lettered bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (stream, name)
);
CREATE TABLE {t}_pending (
    stream text NOT NULL,
    durable text NOT NULL,
    seq bigint NOT NULL,
    count integer NOT NULL DEFAULT 0,
    owner text,
    deadline timestamptz NOT NULL DEFAULT '-infinity',
    PRIMARY KEY (stream, durable, seq)
);
CREATE INDEX {t}_pending_due ON {t}_pending (stream, durable, deadline);

-- Drop a stream's oldest messages past its limits (and the deliveries that wait
-- for them). Takes the stream's row lock, as a publish does.
CREATE FUNCTION {t}_evict(p_stream text) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    s record;
    first_seq bigint;
    row_time timestamptz;
    row_size bigint;
    dropped bigint := 0;
    freed bigint := 0;
BEGIN
    SELECT max_age, max_count, max_bytes, last_seq, msgs, bytes INTO s
        FROM {t}_streams WHERE name = p_stream FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    first_seq := s.last_seq - s.msgs + 1;
    IF s.max_count IS NOT NULL AND s.msgs > s.max_count THEN
        WITH gone AS (
            DELETE FROM {t}_log WHERE stream = p_stream AND seq < s.last_seq - s.max_count + 1
            RETURNING size
        ) SELECT count(*), coalesce(sum(size), 0) INTO dropped, freed FROM gone;
    END IF;
    LOOP
        EXIT WHEN s.msgs - dropped <= 0;
        -- A stream keeps its newest message against the byte limit; age takes it too.
        IF NOT (s.max_bytes IS NOT NULL AND s.msgs - dropped > 1
                AND s.bytes - freed > s.max_bytes) THEN
            EXIT WHEN s.max_age IS NULL;
            SELECT time INTO row_time FROM {t}_log
                WHERE stream = p_stream AND seq = first_seq + dropped;
            EXIT WHEN row_time IS NULL
                OR row_time >= clock_timestamp() - make_interval(secs => s.max_age);
        END IF;
        DELETE FROM {t}_log WHERE stream = p_stream AND seq = first_seq + dropped
            RETURNING size INTO row_size;
        dropped := dropped + 1;
        freed := freed + coalesce(row_size, 0);
    END LOOP;
    IF dropped > 0 THEN
        UPDATE {t}_streams SET msgs = msgs - dropped, bytes = bytes - freed
            WHERE name = p_stream;
        DELETE FROM {t}_pending p USING {t}_durables d
            WHERE d.stream = p_stream AND p.stream = p_stream AND p.durable = d.name
              AND p.seq < first_seq + dropped;
    END IF;
END
$fn$;

-- One publish: retained by the stream whose subjects match (at most one: subjects
-- never overlap), queued for each durable whose pattern matches, then notified to
-- core subscribers (inline up to NOTIFY's limit, else stored and referenced).
-- Durable members are woken on channel <t>_d with 'p <stream> <topic>'.
CREATE FUNCTION {t}_publish(p_topic text, p_env bytea, p_size bigint, p_inline boolean)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    s_name text;
    s_seq bigint;
    limited boolean;
    fanned bigint;
    body_id bigint;
BEGIN
    UPDATE {t}_streams SET last_seq = last_seq + 1, msgs = msgs + 1, bytes = bytes + p_size
        WHERE p_topic ~ subjects_re
        RETURNING name, last_seq,
            max_age IS NOT NULL OR max_count IS NOT NULL OR max_bytes IS NOT NULL
        INTO s_name, s_seq, limited;
    IF s_name IS NOT NULL THEN
        INSERT INTO {t}_log (stream, seq, topic, data, size, time)
            VALUES (s_name, s_seq, p_topic, p_env, p_size, clock_timestamp());
        -- A new statement sees durables committed while this one waited for the lock.
        INSERT INTO {t}_pending (stream, durable, seq)
            SELECT s_name, d.name, s_seq FROM {t}_durables d
            WHERE d.stream = s_name AND p_topic ~ d.pattern_re;
        GET DIAGNOSTICS fanned = ROW_COUNT;
        IF limited THEN
            PERFORM {t}_evict(s_name);
        END IF;
        IF fanned > 0 THEN
            PERFORM pg_notify('{t}_d', 'p ' || s_name || ' ' || p_topic);
        END IF;
    END IF;
    IF p_inline THEN
        PERFORM pg_notify('{t}', p_topic || ' ' || translate(encode(p_env, 'base64'), E'\\n', ''));
    ELSE
        INSERT INTO {t}_bodies (data) VALUES (p_env) RETURNING id INTO body_id;
        PERFORM pg_notify('{t}', p_topic || ' @' || body_id);
    END IF;
END
$fn$;

-- Take up to p_room ready deliveries of a durable for member p_member, oldest first.
-- A row whose ack_wait ran out on this member is left to the durable's other live
-- members, if it has any. The last row (r_seq NULL) carries the seconds until the
-- next deadline of this durable (NULL: none), so the member knows when to look again.
CREATE FUNCTION {t}_fetch(
    p_stream text, p_durable text, p_member text, p_room integer, p_ack_wait double precision,
    p_now double precision
) RETURNS TABLE (
    r_seq bigint, r_count integer, r_topic text, r_data bytea, r_wait double precision
)
LANGUAGE plpgsql AS $fn$
DECLARE
    aged boolean;
    alone boolean;
BEGIN
    SELECT max_age IS NOT NULL INTO aged FROM {t}_streams WHERE name = p_stream;
    IF aged THEN
        PERFORM {t}_evict(p_stream);
    END IF;
    alone := NOT EXISTS (
        SELECT 1 FROM {t}_members m
        WHERE m.grp = 'd:' || p_stream || '/' || p_durable AND m.member <> p_member
          AND m.expires_at >= p_now
    );
    IF p_room > 0 THEN
        RETURN QUERY
        WITH picked AS (
            SELECT p.seq FROM {t}_pending p
            WHERE p.stream = p_stream AND p.durable = p_durable AND p.deadline <= now()
              AND (alone OR p.owner IS NULL OR p.owner <> p_member)
            ORDER BY p.seq
            LIMIT p_room
            FOR UPDATE SKIP LOCKED
        ), taken AS (
            UPDATE {t}_pending p
            SET owner = p_member, count = p.count + 1,
                deadline = now() + make_interval(secs => p_ack_wait)
            FROM picked
            WHERE p.stream = p_stream AND p.durable = p_durable AND p.seq = picked.seq
            RETURNING p.seq, p.count
        )
        SELECT taken.seq, taken.count, l.topic, l.data, NULL::double precision
        FROM taken JOIN {t}_log l ON l.stream = p_stream AND l.seq = taken.seq
        ORDER BY taken.seq;
    END IF;
    RETURN QUERY
    SELECT NULL::bigint, NULL::integer, NULL::text, NULL::bytea,
           extract(epoch FROM min(p.deadline) - now())::double precision
    FROM {t}_pending p
    WHERE p.stream = p_stream AND p.durable = p_durable AND p.deadline > now();
END
$fn$;
"""


class Statements:
    """The SQL text of every durable statement for broker table `t`."""

    def __init__(self, t: str) -> None:
        self.publish = f"SELECT {t}_publish($1, $2, $3, $4)"
        self.fetch = f"SELECT * FROM {t}_fetch($1, $2, $3, $4, $5, $6)"
        self.stream_names = f"SELECT name, subjects FROM {t}_streams"
        # add_stream: serialised by a transaction-scoped advisory lock, so two
        # processes cannot add overlapping streams at once.
        self.lock_streams = "SELECT pg_advisory_xact_lock(hashtext($1))"
        self.upsert_stream = (
            f"INSERT INTO {t}_streams (name, subjects, subjects_re, max_age, max_count, max_bytes)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO UPDATE SET"
            " subjects = excluded.subjects, subjects_re = excluded.subjects_re,"
            " max_age = excluded.max_age, max_count = excluded.max_count,"
            " max_bytes = excluded.max_bytes"
        )
        self.evict = f"SELECT {t}_evict($1)"
        self.lock_stream = f"SELECT name FROM {t}_streams WHERE name = $1 FOR UPDATE"
        self.find_durable = f"SELECT pattern FROM {t}_durables WHERE stream = $1 AND name = $2"
        self.add_durable = (
            f"INSERT INTO {t}_durables (stream, name, pattern, pattern_re) VALUES ($1, $2, $3, $4)"
        )
        # Backfill for a start position: retained messages from sequence $4 (or
        # published at or after time $5) that match the pattern.
        self.backfill = (
            f"INSERT INTO {t}_pending (stream, durable, seq)"
            f" SELECT $1, $2, l.seq FROM {t}_log l"
            " WHERE l.stream = $1 AND l.seq >= $4 AND l.time >= to_timestamp($5)"
            " AND l.topic ~ $3"
        )
        self.delete_stream = (
            f"WITH a AS (DELETE FROM {t}_streams WHERE name = $1),"
            f" b AS (DELETE FROM {t}_log WHERE stream = $1),"
            f" c AS (DELETE FROM {t}_durables WHERE stream = $1)"
            f" DELETE FROM {t}_pending WHERE stream = $1"
        )
        self.delete_durable = (
            f"WITH a AS (DELETE FROM {t}_durables WHERE stream = $1 AND name = $2)"
            f" DELETE FROM {t}_pending WHERE stream = $1 AND durable = $2"
        )
        # Settles, batched: one row per message (the caller keeps one op per message,
        # since a statement may change a row only once).
        self.settle = f"""
WITH o AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::integer[], $5::text[],
                         $6::double precision[], $7::text[], $8::boolean[])
        AS o(stream, durable, seq, count, how, delay, member, dead)
), acked AS (
    DELETE FROM {t}_pending p USING o
    WHERE o.how = 'ack' AND p.stream = o.stream AND p.durable = o.durable AND p.seq = o.seq
), termed AS (
    DELETE FROM {t}_pending p USING o
    WHERE o.how = 'term' AND p.stream = o.stream AND p.durable = o.durable AND p.seq = o.seq
      AND p.count = o.count
    RETURNING o.stream, o.durable, o.dead
), counted AS (
    UPDATE {t}_durables d SET dead_lettered = d.dead_lettered + x.n
    FROM (SELECT stream, durable, count(*) AS n FROM termed WHERE dead
          GROUP BY stream, durable) x
    WHERE d.stream = x.stream AND d.name = x.durable
), back AS (
    UPDATE {t}_pending p
    SET owner = NULL, deadline = now() + make_interval(secs => o.delay),
        count = p.count - CASE WHEN o.how = 'release' THEN 1 ELSE 0 END
    FROM o
    WHERE o.how IN ('nack', 'release') AND p.stream = o.stream AND p.durable = o.durable
      AND p.seq = o.seq AND p.count = o.count AND p.owner = o.member
    RETURNING o.stream, o.durable, o.delay
), progress AS (
    UPDATE {t}_pending p SET deadline = now() + make_interval(secs => o.delay)
    FROM o
    WHERE o.how = 'progress' AND p.stream = o.stream AND p.durable = o.durable
      AND p.seq = o.seq AND p.count = o.count AND p.owner = o.member
)
SELECT pg_notify('{t}_d', 'w ' || x.stream || ' ' || x.durable)
FROM (SELECT DISTINCT stream, durable FROM back WHERE delay = 0) x
"""
        # A member leaves: what it holds goes out again at once (counted as delivered).
        self.leave = (
            f"WITH r AS (UPDATE {t}_pending SET owner = NULL, deadline = '-infinity'"
            " WHERE stream = $1 AND durable = $2 AND owner = $3),"
            f" m AS (DELETE FROM {t}_members WHERE grp = $4 AND member = $3)"
            f" SELECT pg_notify('{t}_d', 'w ' || $1 || ' ' || $2)"
        )
        self.info_streams = (
            f"SELECT name, subjects, max_age, max_count, max_bytes, last_seq, msgs, bytes"
            f" FROM {t}_streams ORDER BY name"
        )
        self.info_durables = f"""
SELECT d.stream, d.name, d.pattern, d.dead_lettered,
       coalesce(p.waiting, 0), coalesce(p.unacked, 0), coalesce(p.redelivered, 0),
       (SELECT count(*) FROM {t}_members m
        WHERE m.grp = 'd:' || d.stream || '/' || d.name AND m.expires_at >= $1)
FROM {t}_durables d
LEFT JOIN (
    SELECT stream, durable, count(*) FILTER (WHERE count = 0) AS waiting,
           count(*) FILTER (WHERE count > 0) AS unacked,
           count(*) FILTER (WHERE count > 1) AS redelivered
    FROM {t}_pending GROUP BY stream, durable
) p ON p.stream = d.stream AND p.durable = d.name
ORDER BY d.stream, d.name
"""

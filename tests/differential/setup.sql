-- Run by tests/integration/test_differential.py on the primary before any session, once per
-- driver prefix (@P@), then waited for on every replica: the *_replicated scenarios call a
-- writing plpgsql function that the replicas already have, so the only thing at stake there
-- is the write inside a SELECT, not a stale read.
CREATE TABLE @P@wfr (id serial PRIMARY KEY, note text);
CREATE FUNCTION @P@wfr_add(n text) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO @P@wfr (note) VALUES (n);
  RETURN (SELECT count(*) FROM @P@wfr);
END $$;
-- apg_copy_replicated: asyncpg's copy_records_to_table into a table the replicas already have
-- (its introspection query is a Parse/Describe/Flush batch that may run on a replica).
CREATE TABLE @P@cpr (id int, v text);

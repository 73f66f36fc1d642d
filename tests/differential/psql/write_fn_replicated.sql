-- psql -f: SELECT of a writing plpgsql function that was created (and replayed by the replicas)
-- before the session started (tests/differential/setup.sql).
\set VERBOSITY verbose
\echo #step call_1
SELECT @P@wfr_add('first');
\echo #step call_2
SELECT @P@wfr_add('second') AS n;
\echo #step call_in_from_clause
SELECT * FROM @P@wfr_add('third');
\echo #step read_back
SELECT id, note FROM @P@wfr ORDER BY id;

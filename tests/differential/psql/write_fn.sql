-- psql -f: a user plpgsql function that writes, called as SELECT fn() (simple protocol).
\set VERBOSITY verbose
\echo #step create
CREATE TABLE @P@wf (id serial PRIMARY KEY, note text);
CREATE FUNCTION @P@wf_add(n text) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO @P@wf (note) VALUES (n);
  RETURN (SELECT count(*) FROM @P@wf);
END $$;
\echo #step call_1
SELECT @P@wf_add('first');
\echo #step call_2
SELECT @P@wf_add('second') AS n;
\echo #step call_in_from_clause
SELECT * FROM @P@wf_add('third');
\echo #step read_back
SELECT id, note FROM @P@wf ORDER BY id;
\echo #step call_in_read_only_txn_25006
BEGIN READ ONLY; SELECT @P@wf_add('ro');
\echo #step rollback
ROLLBACK;
\echo #step count
SELECT count(*) FROM @P@wf;

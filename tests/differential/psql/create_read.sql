-- psql -f: CREATE TABLE then an immediate read; INSERT/UPDATE/DELETE each read back at once.
\set VERBOSITY verbose
\echo #step create
CREATE TABLE @P@cr (id int PRIMARY KEY, v text NOT NULL);
\echo #step read_empty_table
SELECT id, v FROM @P@cr ORDER BY id;
\echo #step insert
INSERT INTO @P@cr VALUES (1, 'one'), (2, 'two'), (3, 'three');
\echo #step read_inserted
SELECT id, v FROM @P@cr ORDER BY id;
\echo #step update_returning
UPDATE @P@cr SET v = upper(v) WHERE id >= 2 RETURNING id, v;
\echo #step read_updated
SELECT id, v FROM @P@cr ORDER BY id;
\echo #step delete
DELETE FROM @P@cr WHERE id = 1;
\echo #step count_after_delete
SELECT count(*) FROM @P@cr;
\echo #step alter_add_column
ALTER TABLE @P@cr ADD COLUMN n int DEFAULT 7;
\echo #step read_new_column
SELECT id, v, n FROM @P@cr ORDER BY id;
\echo #step create_table_as
CREATE TABLE @P@cr2 AS SELECT id * 10 AS id FROM @P@cr;
\echo #step read_table_as
TABLE @P@cr2 ORDER BY id;
\echo #step multi_statement_write_then_read
INSERT INTO @P@cr VALUES (9, 'nine'); SELECT count(*) FROM @P@cr;
\echo #step read_after_multi
SELECT id, v FROM @P@cr WHERE id = 9;

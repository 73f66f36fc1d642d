-- psql -f: transactions with savepoints and errors; the SQLSTATEs, then reads after COMMIT.
\set VERBOSITY verbose
\echo #step create
CREATE TABLE @P@tx (id int PRIMARY KEY, v text);
\echo #step begin
BEGIN;
\echo #step insert_1
INSERT INTO @P@tx VALUES (1, 'a');
\echo #step savepoint
SAVEPOINT s1;
\echo #step insert_duplicate_23505
INSERT INTO @P@tx VALUES (1, 'dup');
\echo #step read_in_aborted_25P02
SELECT count(*) FROM @P@tx;
\echo #step rollback_to_savepoint
ROLLBACK TO SAVEPOINT s1;
\echo #step insert_2
INSERT INTO @P@tx VALUES (2, 'b');
\echo #step release
RELEASE SAVEPOINT s1;
\echo #step read_in_txn
SELECT id, v FROM @P@tx ORDER BY id;
\echo #step commit
COMMIT;
\echo #step read_after_commit
SELECT id, v FROM @P@tx ORDER BY id;
\echo #step failed_txn_22012
BEGIN; INSERT INTO @P@tx VALUES (3, 'c'); SELECT 1 / 0;
\echo #step commit_of_failed_is_rollback
COMMIT;
\echo #step read_after_rolled_back
SELECT id, v FROM @P@tx ORDER BY id;
\echo #step rollback_explicit
BEGIN; DELETE FROM @P@tx; ROLLBACK;
\echo #step read_after_rollback
SELECT count(*) FROM @P@tx;
\echo #step not_null_23502
INSERT INTO @P@tx VALUES (NULL, 'x');
\echo #step undefined_column_42703
SELECT nosuchcolumn FROM @P@tx;
\echo #step syntax_error_42601
SELEC 1;
\echo #step undefined_table_42P01
SELECT * FROM @P@does_not_exist;
\echo #step commit_outside_txn_warning
COMMIT;

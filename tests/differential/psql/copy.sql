-- psql via stdin: COPY ... FROM STDIN with inline data, \copy, COPY ... TO STDOUT; counts read
-- right after each COPY.
\set VERBOSITY verbose
\echo #step create
CREATE TABLE @P@cp (id int PRIMARY KEY, v text, x numeric);
\echo #step copy_from_stdin
COPY @P@cp FROM STDIN;
1	one	1.5
2	two	\N
3	three	3.25
\.
\echo #step count_after_copy
SELECT count(*), sum(x) FROM @P@cp;
\echo #step copy_csv_from_stdin
COPY @P@cp (id, v, x) FROM STDIN WITH (FORMAT csv, HEADER true);
id,v,x
4,"four, with comma",4
5,five,5.5
\.
\echo #step read_after_csv_copy
SELECT id, v, x FROM @P@cp ORDER BY id;
\echo #step copy_bad_data_22P02
COPY @P@cp FROM STDIN;
6	six	notanumber
\.
\echo #step count_after_failed_copy
SELECT count(*) FROM @P@cp;
\echo #step copy_to_stdout
COPY @P@cp TO STDOUT;
\echo #step copy_query_to_stdout_csv
COPY (SELECT id, v FROM @P@cp WHERE id > 2 ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER true);
\echo #step backslash_copy_from_pstdin
\copy @P@cp (id, v) from pstdin with (format csv)
7,seven
8,eight
\.
\echo #step count_after_backslash_copy
SELECT count(*) FROM @P@cp;
\echo #step copy_in_txn_then_read
BEGIN; DELETE FROM @P@cp WHERE id > 3; COPY @P@cp (id, v) FROM STDIN;
10	ten
\.
\echo #step commit
COMMIT;
\echo #step read_after_txn_copy
SELECT id, v FROM @P@cp ORDER BY id;

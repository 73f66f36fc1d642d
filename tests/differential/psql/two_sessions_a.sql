-- psql process A of two_sessions: writes and exits (its commit is acknowledged).
\set VERBOSITY verbose
\echo #step a_write
INSERT INTO @P@ts VALUES (:round, 'round ' || :round);

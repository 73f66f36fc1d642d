-- psql process B of two_sessions: started right after A exited; reads what A committed.
\set VERBOSITY verbose
\echo #step b_read
SELECT count(*), max(id) FROM @P@ts;

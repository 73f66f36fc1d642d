-- psql process that creates the two_sessions table and exits.
\set VERBOSITY verbose
\echo #step create
CREATE TABLE @P@ts (id int PRIMARY KEY, v text);

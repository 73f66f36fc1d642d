-- psql -f: catalog queries right after DDL: \d, \dt, \di, \dv, \df, information_schema.
\set VERBOSITY verbose
\echo #step ddl
CREATE TABLE @P@md (id int PRIMARY KEY, name text NOT NULL DEFAULT 'x', at date);
CREATE INDEX @P@md_name_idx ON @P@md (name);
CREATE VIEW @P@md_v AS SELECT id, name FROM @P@md WHERE id > 0;
COMMENT ON TABLE @P@md IS 'differential metadata table';
CREATE FUNCTION @P@md_f(a int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT a + 1';
\echo #step describe_table
\d @P@md
\echo #step list_tables
\dt @P@md*
\echo #step list_indexes
\di @P@md*
\echo #step list_views
\dv @P@md*
\echo #step list_functions
\df @P@md*
\echo #step table_comment
SELECT obj_description('@P@md'::regclass, 'pg_class');
\echo #step information_schema_columns
SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns
 WHERE table_name = '@P@md' ORDER BY ordinal_position;
\echo #step pg_indexes
SELECT indexname, indexdef FROM pg_indexes WHERE tablename = '@P@md' ORDER BY indexname;
\echo #step call_new_function
SELECT @P@md_f(41);
\echo #step alter_then_describe
ALTER TABLE @P@md ADD COLUMN extra jsonb;
\echo #step describe_after_alter
\d @P@md
\echo #step drop_view_then_list
DROP VIEW @P@md_v;
\echo #step list_views_after_drop
\dv @P@md*

-- Typical OLTP statements for bench/classify_bench.cc: one statement per line; lines starting
-- with "--" and blank lines are skipped. Mix: pgbench, Django, Rails, Hibernate, SQLAlchemy.
SELECT abalance FROM pgbench_accounts WHERE aid = $1
UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2
UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2
UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)
BEGIN
COMMIT
ROLLBACK
SELECT "auth_user"."id", "auth_user"."password", "auth_user"."last_login", "auth_user"."is_superuser", "auth_user"."username", "auth_user"."email" FROM "auth_user" WHERE "auth_user"."id" = $1 LIMIT 21
SELECT "django_session"."session_key", "django_session"."session_data", "django_session"."expire_date" FROM "django_session" WHERE ("django_session"."expire_date" > $1 AND "django_session"."session_key" = $2) LIMIT 21
INSERT INTO "blog_post" ("title", "body", "created_at", "author_id") VALUES ($1, $2, $3, $4) RETURNING "blog_post"."id"
UPDATE "blog_post" SET "title" = $1, "body" = $2 WHERE "blog_post"."id" = $3
SELECT "shop_order"."id", "shop_order"."status" FROM "shop_order" WHERE "shop_order"."id" = $1 FOR UPDATE
SELECT COUNT(*) AS "__count" FROM "blog_post" WHERE "blog_post"."author_id" = $1
SAVEPOINT "s140245_x1"
RELEASE SAVEPOINT "s140245_x1"
SELECT "users".* FROM "users" WHERE "users"."id" = $1 LIMIT $2
INSERT INTO "users" ("email", "created_at", "updated_at") VALUES ($1, $2, $3) RETURNING "id"
UPDATE "users" SET "sign_in_count" = $1, "updated_at" = $2 WHERE "users"."id" = $3
DELETE FROM "sessions" WHERE "sessions"."id" = $1
SELECT 1 AS one FROM "users" WHERE "users"."email" = $1 LIMIT $2
SELECT "posts".* FROM "posts" WHERE "posts"."user_id" IN ($1, $2, $3) ORDER BY "posts"."created_at" DESC
INSERT INTO "ar_internal_metadata" ("key", "value", "created_at", "updated_at") VALUES ($1, $2, $3, $4) ON CONFLICT ("key") DO UPDATE SET "value" = excluded."value" RETURNING "key"
select u1_0.id,u1_0.email,u1_0.name from users u1_0 where u1_0.id=$1
insert into users (email,name,id) values ($1,$2,$3)
select nextval('users_seq')
update users set email=$1,name=$2 where id=$3
select o1_0.id,o1_0.customer_id,o1_0.total from orders o1_0 join customers c1_0 on c1_0.id=o1_0.customer_id where c1_0.email=$1 order by o1_0.id desc offset $2 rows fetch first $3 rows only
SELECT users.id, users.name, users.fullname FROM users WHERE users.name = $1
INSERT INTO address (email_address, user_id) VALUES ($1, $2) RETURNING address.id
WITH anon_1 AS (SELECT users.id AS id FROM users WHERE users.active) SELECT anon_1.id FROM anon_1
SELECT users.id AS users_id, addresses.email AS addresses_email FROM users LEFT OUTER JOIN addresses ON users.id = addresses.user_id WHERE users.id = $1
SET LOCAL statement_timeout = '5s'
SET search_path TO tenant_42, public
SELECT id FROM jobs WHERE state = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED
/* pgswitch: replica */ SELECT count(*) FROM events WHERE created_at > now() - interval '1 hour'
SELECT product_id, sum(quantity) FROM order_items WHERE order_id = ANY($1::bigint[]) GROUP BY product_id

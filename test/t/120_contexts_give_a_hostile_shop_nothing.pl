# Contexts run with least privilege (issue 13): the shop's application role
# owns the tables the contexts read and the schema public, and attaches to
# them what it likes -- functions that shadow those a context calls (a
# public.lower(varchar), a public.to_jsonb(record) that outranked the
# wrapper's to_jsonb in 1.0) and a row-security policy whose function tries
# to read the secrets, blacklist a number and point api_base_url elsewhere.
# Contexts run as wa_notify_context: the shadowing function runs with no
# right on wa_notify, the policy never runs (row_security = off fails that
# context), the secrets, the blacklist and api_base_url stay as they were,
# one message is sent normally and the other fails with a clear error.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaMock;
use WaNode;

my $mock = WaMock->new;
my $node = WaMock::setup_node('hostile', $mock);
WaNode::shop_roles($node);

my $guarded = q{SELECT string_agg(name || '=' || coalesce(value, ''), ',' ORDER BY name)
  FROM wa_notify.setting WHERE is_secret OR name = 'api_base_url'};
my $before = $node->safe_psql('postgres', $guarded);

# the shop, as its own role: tables, grants, and the traps
$node->safe_psql('postgres', q{
SET ROLE shop;
CREATE TABLE customer (id int PRIMARY KEY, name varchar, phone text);
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int, total numeric(12,2), status text DEFAULT 'new');
CREATE TABLE address (customer_id int, city text);
CREATE TABLE loot (what text);
GRANT INSERT, SELECT ON loot TO PUBLIC;
GRANT SELECT ON customer, orders, address TO wa_notify_context;
GRANT TRIGGER ON orders TO wa_admin;
GRANT SELECT ON customer, orders, address TO wa_admin;
INSERT INTO customer VALUES (1, 'ANA', '(11) 98765-4321');
INSERT INTO address VALUES (1, 'Santos');
CREATE FUNCTION public.grab(tag text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        INSERT INTO public.loot SELECT tag || ': ' || s.name || '=' || coalesce(s.value, '')
          FROM wa_notify.setting s WHERE s.is_secret;
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO public.loot VALUES (tag || ': ' || current_user || ' read no setting');
    END;
    BEGIN
        PERFORM wa_notify.block('5511900000001', 'by the shop');
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO public.loot VALUES (tag || ': ' || current_user || ' blocked nobody');
    END;
    BEGIN
        PERFORM wa_notify.configure(api_base_url => 'http://127.0.0.1:9');
    EXCEPTION WHEN OTHERS THEN
        INSERT INTO public.loot VALUES (tag || ': ' || current_user || ' configured nothing');
    END;
END $$;
CREATE FUNCTION public.to_jsonb(r record) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN PERFORM public.grab('to_jsonb'); RETURN '{}'; END $$;
CREATE FUNCTION public.lower(v varchar) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM public.grab('lower'); RETURN pg_catalog.lower(v::text); END $$;
CREATE FUNCTION public.peek() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM public.grab('policy'); RETURN true; END $$;
GRANT EXECUTE ON FUNCTION public.grab(text), public.to_jsonb(record), public.lower(varchar),
                          public.peek() TO PUBLIC;
});

# the admin maps two events; its context calls lower() on a varchar column
$node->safe_psql('postgres', q{
SET ROLE wa_admin;
SELECT wa_notify.watch('order_placed', 'orders', 'id',
    $$SELECT c.phone, lower(c.name) AS customer_name, o.id::text AS order_number, o.total::text AS total
        FROM orders o JOIN customer c ON c.id = o.customer_id WHERE o.id = $1::int$$);
SELECT wa_notify.watch('order_cancelled', 'orders', 'id',
    $$SELECT c.phone, c.name AS customer_name, o.id::text AS order_number, a.city
        FROM orders o JOIN customer c ON c.id = o.customer_id
        JOIN address a ON a.customer_id = c.id WHERE o.id = $1::int$$,
    $$status = 'cancelled'$$);
});

# after watch(), the shop puts a policy on a table a context reads
$node->safe_psql('postgres', q{
SET ROLE shop;
ALTER TABLE address ENABLE ROW LEVEL SECURITY;
CREATE POLICY trap ON address USING (public.peek());
INSERT INTO orders (customer_id, total) VALUES (1, 10);
UPDATE orders SET status = 'cancelled' WHERE id = 1;
});

ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 2 FROM wa_notify.message WHERE status IN ('sent', 'failed')}),
	'both captures resolved');
my $posts = $mock->wait_posts(1);
is(scalar(@$posts), 1, 'one message sent');
is($posts->[0]{json}{to}, '5511987654321', 'sent to the customer');
is($posts->[0]{json}{template}{components}[0]{parameters}[0]{text}, 'ana',
	'the context ran normally (the shop\'s lower() gave the name)');

is($node->safe_psql('postgres', q{SELECT concat_ws('|', event, status, error_message) FROM wa_notify.message ORDER BY id}),
	join("\n", 'order_placed|sent',
		'order_cancelled|failed|context query failed: query would be affected by row-level security policy for table "address"'),
	'the context reading a table under a policy failed with a clear error; the other was sent');

is($node->safe_psql('postgres', q{SELECT string_agg(DISTINCT what, E'\n' ORDER BY what) FROM loot}),
	join("\n", 'lower: wa_notify_context blocked nobody', 'lower: wa_notify_context configured nothing',
		'lower: wa_notify_context read no setting'),
	'the shadowing lower() ran as wa_notify_context and reached nothing; neither to_jsonb() nor the policy ran');
is($node->safe_psql('postgres', $guarded), $before, 'secrets and api_base_url unchanged');
is($node->safe_psql('postgres', 'SELECT count(*) FROM wa_notify.blocked'), '0', 'nobody blacklisted');

$node->stop;
done_testing();

# Capture across pg_dump / restore, and under concurrency:
#  - watches (config-dumped) and the triggers on the shop's tables (dumped
#    with those tables) come back together: a restored database captures new
#    orders, and keeps what was staged but not yet resolved;
#  - concurrent checkouts while the resolver runs: every order gets exactly
#    one message, none is lost or doubled;
#  - a shop role with no privilege on schema wa_notify can still write its
#    watched tables.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaNode;

my $node = WaNode::preloaded('capture');

$node->safe_psql('postgres', 'CREATE DATABASE shop');
$node->safe_psql('shop', q{
CREATE EXTENSION wa_notify;
CREATE TABLE customer (id int PRIMARY KEY, name text, phone text);
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customer, status text NOT NULL DEFAULT 'new', total numeric(10,2));
INSERT INTO customer VALUES (1, 'Maria', '(11) 98765-4321');
GRANT SELECT ON customer, orders TO wa_notify_context;   -- contexts run as that role
SELECT wa_notify.watch('order_placed', 'orders', 'id',
  $$SELECT c.phone, c.name AS customer_name, o.id::text AS order_number, o.total
      FROM orders o JOIN customer c ON c.id = o.customer_id WHERE o.id = $1::int$$);
SELECT wa_notify.watch('order_cancelled', 'orders', 'id',
  $$SELECT c.phone, c.name AS customer_name, o.id::text AS order_number, $2->>'status' AS was
      FROM orders o JOIN customer c ON c.id = o.customer_id WHERE o.id = $1::int$$,
  $$status = 'canceled'$$);
INSERT INTO orders (customer_id, total) VALUES (1, 10);
SELECT wa_notify._resolve_pending();
INSERT INTO orders (customer_id, total) VALUES (1, 20);   -- staged, not yet resolved
});
is($node->safe_psql('shop', 'SELECT count(*) FROM wa_notify.capture_queue'), '1',
	'one capture staged before the dump');

# dump and restore into a new database
my $dump = $node->basedir . '/shop.sql';
$node->command_ok([ 'pg_dump', '-d', $node->connstr('shop'), '-f', $dump ], 'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE shop2');
$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('shop2'), '-f', $dump ],
	'restore');

is($node->safe_psql('shop2', 'SELECT event, source, order_key, fires_when FROM wa_notify.watches ORDER BY id'),
	"order_placed|orders|id|\norder_cancelled|orders|id|status = 'canceled'",
	'watches restored');
is($node->safe_psql('shop2',
	"SELECT count(*) FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND tgfoid = 'wa_notify._capture()'::regprocedure"),
	'2', 'capture triggers (one per event kind) restored with the table');
is($node->safe_psql('shop2',
	"SELECT string_agg(c.kind || ' ' || c.args[2], ', ' ORDER BY c.kind, c.watch_id) FROM wa_notify._capture_entries('orders') c"),
	'ins order_placed, ins order_cancelled, upd order_cancelled', 'they hold both watches');
is($node->safe_psql('shop2', 'SELECT count(*) FROM wa_notify.capture_queue'), '1',
	'the staged capture survived the restore');

# the restored database captures: the staged order, a new order and a cancellation
$node->safe_psql('shop2', q{
INSERT INTO orders (customer_id, total) VALUES (1, 30);
UPDATE orders SET status = 'canceled' WHERE id = 1;
UPDATE orders SET total = 11 WHERE id = 1;
});
is($node->safe_psql('shop2', 'SELECT wa_notify._resolve_pending()'), '3', 'three captures resolved');
is($node->safe_psql('shop2',
	"SELECT string_agg(event || ':' || order_key || ':' || status || ':' || coalesce(phone, '-') || ':' || coalesce(params->>'was', '-'), ',' ORDER BY id) FROM wa_notify.message"),
	'order_placed:1:queued:5511987654321:-,order_placed:2:queued:5511987654321:-,'
	. 'order_placed:3:queued:5511987654321:-,order_cancelled:1:queued:5511987654321:canceled',
	'messages after restore: one per event and order, context run');
# a new watch after restore does not collide with restored ids
is($node->safe_psql('shop2',
	q{SELECT wa_notify.watch('refund_issued', 'orders', 'id', $$SELECT '11987654321' AS phone$$, $$status = 'refunded'$$) > 2}),
	't', 'the watch id sequence was restored');

# concurrent checkouts while the resolver runs
$node->safe_psql('shop', 'TRUNCATE wa_notify.message, wa_notify.capture_queue');
my @bg;
for my $c (1 .. 3)
{
	my $h = $node->background_psql('shop');
	$h->query_until(qr/started/, qq{
\\echo started
DO \$\$ BEGIN FOR i IN 1 .. 200 LOOP
  INSERT INTO orders (customer_id, total) VALUES (1, i);
  IF i % 50 = 0 THEN UPDATE orders SET status = 'canceled' WHERE id = (SELECT max(id) FROM orders); END IF;
  COMMIT;
END LOOP; END \$\$;
});
	push @bg, $h;
}
my $resolver = $node->background_psql('shop');
for (1 .. 20) { $resolver->query_safe('SELECT wa_notify._resolve_pending(50)'); }
$_->quit for @bg;
$resolver->query_safe('SELECT wa_notify._resolve_pending(100000)');
$resolver->quit;
is($node->safe_psql('shop', 'SELECT count(*) FROM wa_notify.capture_queue'), '0', 'nothing left staged');
is($node->safe_psql('shop', q{
SELECT count(*) FILTER (WHERE event = 'order_placed') || '/' || count(DISTINCT order_key) FILTER (WHERE event = 'order_placed')
       || '/' || count(*) FILTER (WHERE event = 'order_cancelled')
       || '/' || count(*) FILTER (WHERE phone = '5511987654321' AND resolved_at IS NOT NULL)
  FROM wa_notify.message}),
	'600/600/12/612', '600 orders, 600 distinct placed messages, 12 cancellations, all resolved');

# a shop role without any privilege on wa_notify writes its watched table
$node->safe_psql('shop', q{
CREATE ROLE shop_app LOGIN;
GRANT SELECT, INSERT, UPDATE ON orders TO shop_app;
GRANT USAGE ON SEQUENCE orders_id_seq TO shop_app;
GRANT SELECT ON customer TO shop_app;
});
$node->safe_psql('shop', q{INSERT INTO orders (customer_id, total) VALUES (1, 5)},
	extra_params => [ '-U', 'shop_app' ]);
is($node->safe_psql('shop', 'SELECT wa_notify._resolve_pending()'), '1',
	'the shop role\'s order was captured');

$node->stop;
done_testing();

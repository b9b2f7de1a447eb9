# Watches made by 1.0 keep working after ALTER EXTENSION wa_notify UPDATE
# (issue 13): the update attaches their triggers again without a WHEN clause
# that names columns, so the shop's ALTER COLUMN ... TYPE on a watched
# column succeeds afterwards and the watch still fires; what 1.0 staged is
# resolved by 1.1 as wa_notify_context.  And CREATE EXTENSION in a second
# database of the cluster works although the role wa_notify_context exists.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaNode;

my $node = WaNode::preloaded('update');
$node->safe_psql('postgres', q{
CREATE EXTENSION wa_notify VERSION '1.0';
SELECT wa_notify.configure(enabled => false, use_templates => false);
CREATE TYPE order_state AS ENUM ('new', 'paid', 'cancelled');
CREATE TABLE orders (id serial PRIMARY KEY, phone text DEFAULT '11987654321', st order_state);
SELECT wa_notify.watch('order_cancelled', 'orders', 'id',
    $$SELECT phone FROM orders WHERE id = $1::int$$, $$st = 'cancelled'$$);
INSERT INTO orders (st) VALUES ('cancelled');
});
my ($rc, $out, $err) = $node->psql('postgres', 'ALTER TABLE orders ALTER COLUMN st TYPE text');
like($err, qr/cannot alter type of a column used in a trigger definition/,
	'under 1.0 the watch blocks ALTER COLUMN ... TYPE');

$node->safe_psql('postgres', q{
ALTER EXTENSION wa_notify UPDATE;
GRANT SELECT ON orders TO wa_notify_context;
});
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_trigger
  WHERE tgrelid = 'orders'::regclass AND tgfoid = 'wa_notify._capture()'::regprocedure AND tgnargs = 8}),
	'2', 'the update attached the 1.0 watch again the 1.1 way');
($rc, $out, $err) = $node->psql('postgres', 'ALTER TABLE orders ALTER COLUMN st TYPE text');
is($rc, 0, 'after the update, ALTER COLUMN ... TYPE on the watched column succeeds') or diag($err);
$node->safe_psql('postgres', q{INSERT INTO orders (st) VALUES ('new'); UPDATE orders SET st = 'cancelled' WHERE id = 2});

ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 2 FROM wa_notify.message WHERE resolved_at IS NOT NULL}),
	'the capture staged under 1.0 and the one made after the update are resolved');
is($node->safe_psql('postgres', q{SELECT string_agg(concat_ws('|', event, order_key, status, phone), E'\n' ORDER BY id)
  FROM wa_notify.message}),
	"order_cancelled|1|queued|5511987654321\norder_cancelled|2|queued|5511987654321",
	'both queued with the phone their context gave');
is($node->safe_psql('postgres', q{SELECT problem IS NULL FROM wa_notify.watches}), 't', 'the watch shows no problem');

$node->safe_psql('postgres', 'CREATE DATABASE second');
($rc, $out, $err) = $node->psql('second', 'CREATE EXTENSION wa_notify');
is($rc, 0, 'CREATE EXTENSION in a second database, wa_notify_context existing') or diag($err);

$node->stop;
done_testing();

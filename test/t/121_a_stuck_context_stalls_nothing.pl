# A context can neither stall nor poison the worker (issue 13): a context
# that sleeps (pg_sleep(600)) and one blocked on a lock fail their own
# message after context_timeout, the other watches' messages are resolved
# and sent; a staged 3 kB order key gives a failed message and the next
# orders are sent; and a fast shutdown while a context runs finishes (the
# worker answers SIGTERM in the middle of the context).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaMock;
use WaNode;

my $mock = WaMock->new;
my $node = WaMock::setup_node('stuck', $mock);
WaNode::shop_roles($node);

$node->safe_psql('postgres', q{
SET ROLE shop;
CREATE TABLE orders (id serial PRIMARY KEY, ref text, customer text, phone text, total numeric(12,2),
                     status text DEFAULT 'new');
CREATE TABLE held (id int);
GRANT SELECT ON orders, held TO wa_notify_context;
GRANT TRIGGER ON orders TO wa_admin;
GRANT SELECT ON orders, held TO wa_admin;
RESET ROLE;
-- a context may run 2 s (set as configure() will once it takes the argument)
UPDATE wa_notify.setting SET value = '2' WHERE name = 'context_timeout';
SET ROLE wa_admin;
-- order_placed: the normal mapping (the order key is the shop's ref text)
SELECT wa_notify.watch('order_placed', 'orders', 'ref',
    $$SELECT phone, customer AS customer_name, ref AS order_number, total::text AS total
        FROM orders WHERE ref = $1$$);
-- order_cancelled: a context that sleeps ten minutes
SELECT wa_notify.watch('order_cancelled', 'orders', 'ref',
    $$SELECT phone, customer AS customer_name, ref AS order_number FROM orders, pg_sleep(600) WHERE ref = $1$$,
    $$status = 'cancelled'$$);
-- order_processing: a context that waits for a lock the shop holds
SELECT wa_notify.watch('order_processing', 'orders', 'ref',
    $$SELECT phone, customer AS customer_name, ref AS order_number
        FROM orders WHERE ref = $1 AND NOT EXISTS (SELECT 1 FROM held)$$,
    $$status = 'processing'$$);
});

# the shop holds an exclusive lock on "held" for the whole test
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK TABLE held IN ACCESS EXCLUSIVE MODE;');

$node->safe_psql('postgres', q{
SET ROLE shop;
INSERT INTO orders (ref, customer, phone, total, status) VALUES ('A-1', 'Ana', '11987654321', 10, 'cancelled');
INSERT INTO orders (ref, customer, phone, total, status) VALUES ('B-2', 'Bia', '11987654322', 20, 'processing');
INSERT INTO orders (ref, customer, phone, total) VALUES (repeat('k', 3000), 'Caio', '11987654323', 30);
INSERT INTO orders (ref, customer, phone, total) VALUES ('D-4', 'Duda', '11987654324', 40);
});

my $posts = $mock->wait_posts(3);
is(join(',', sort map { $_->{json}{to} } @$posts), '5511987654321,5511987654322,5511987654324',
	'the order_placed messages of A-1, B-2 and D-4 were sent past the stuck contexts and the long key');
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 0 FROM wa_notify.message WHERE resolved_at IS NULL}),
	'every capture resolved');
# the blocked context: lock_timeout and the context's time limit are the
# same length (capture_context.c), so either may fire first on a busy machine
like($node->safe_psql('postgres', q{
SELECT string_agg(concat_ws('|', event, left(order_key, 8), status, error_message), E'\n' ORDER BY id)
  FROM wa_notify.message WHERE status = 'failed'}),
	qr/\A\Qorder_cancelled|A-1|failed|context query failed: context query did not finish within 2 s\E
\Qorder_processing|B-2|failed|context query failed: \E(?:\Qcanceling statement due to lock timeout\E|\Qcontext query did not finish within 2 s\E)
\Qorder_placed|failed|the order key is 3000 bytes long, over the 1024 bytes wa_notify accepts (it begins 'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk')\E\z/,
	'the sleeping and the blocked context failed their own message; the 3 kB key failed without breaking the index');
is($node->safe_psql('postgres', q{SELECT count(*) FROM wa_notify.capture_queue}), '0', 'nothing left staged');

# a fast shutdown in the middle of a context: the worker ends it at once
$node->safe_psql('postgres', q{
UPDATE wa_notify.setting SET value = '300' WHERE name = 'context_timeout';
SET ROLE shop;
UPDATE orders SET status = 'cancelled' WHERE ref = 'D-4';
});
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'wa_notify worker' AND wait_event = 'PgSleep'}),
	'the worker is inside the sleeping context');
$locker->quit;
my $t0 = time;
$node->stop('fast');
my $took = time - $t0;
diag(sprintf('pg_ctl -m fast stop took %.2f s with the worker inside a 300 s context', $took));
pass('pg_ctl -m fast stop finished while a context was sleeping');

# nothing was recorded for the interrupted context: it is still to do
# (staged or pending) after a restart, not failed
$node->start;
is($node->safe_psql('postgres', q{
SELECT (SELECT count(*) FROM wa_notify.capture_queue WHERE event = 'order_cancelled' AND order_key = 'D-4')
     + (SELECT count(*) FROM wa_notify.message
         WHERE event = 'order_cancelled' AND order_key = 'D-4' AND resolved_at IS NULL)
    || '/' || (SELECT count(*) FROM wa_notify.message
                WHERE event = 'order_cancelled' AND order_key = 'D-4' AND resolved_at IS NOT NULL)}),
	'1/0', 'the interrupted capture is still to do, not failed');
$node->stop('fast');
done_testing();

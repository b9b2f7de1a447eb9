# The once-per-(event, order) guarantee holds across the live queue and the
# archive (doc/retention.md): a capture of an (event, order) whose message
# maintain() archived enqueues nothing, while another order's capture is
# enqueued as usual.  The move never waits for a batch being staged: it is
# deferred to the next run (the advisory lock both take, 20_capture.sql).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaNode;
use WaHistory;

my $node = WaNode::preloaded('unique');
$node->safe_psql('postgres', q{
CREATE EXTENSION wa_notify;
SELECT wa_notify.configure(enabled => false);      -- resolve captures, send nothing
CREATE TABLE orders (id int PRIMARY KEY, phone text);
GRANT SELECT ON orders TO wa_notify_context;
SELECT wa_notify.watch('order_placed', 'orders', 'id',
    $$SELECT phone, id::text AS order_number FROM orders WHERE id = $1::int$$);
});
WaHistory::first_maintain_done($node);

# order 7's confirmation was delivered 30 days ago and is archived
WaHistory::add($node, 'postgres', days => 30, order => '7');
my $r = WaHistory::maintain($node);
is($r->{moved}, 1, 'the delivered message of order 7 is archived');
is($node->safe_psql('postgres', q{SELECT count(*) FROM wa_notify.message WHERE order_key = '7'}), '0',
	'no live message of order 7 is left');

# the shop inserts order 7 again (a re-import, a replayed event) and order 8
$node->safe_psql('postgres', q{INSERT INTO orders VALUES (7, '(11) 98765-4321'), (8, '(11) 98765-4322')});
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM wa_notify.message WHERE order_key = '8' AND resolved_at IS NOT NULL}),
	'order 8 is captured and enqueued');
is($node->safe_psql('postgres', q{SELECT count(*) FROM wa_notify.capture_queue}), '0', 'every capture was staged');
is($node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM wa_notify.message WHERE event = 'order_placed' AND order_key = '7') || ' ' ||
	       (SELECT string_agg(tableoid::regclass::text, ',') FROM wa_notify.message_archive
	         WHERE event = 'order_placed' AND order_key = '7')}),
	'0 wa_notify.' . $node->safe_psql('postgres', q{SELECT wa_notify._archive_partition_name(now() - interval '30 days')}),
	'order 7 has still its one, archived, message: the capture enqueued nothing');

# a batch being staged holds the lock shared: the move is deferred, not waited for
WaHistory::add($node, 'postgres', days => 30, order => '9');
my $stager = $node->background_psql('postgres');
$stager->query_safe('BEGIN; SELECT pg_advisory_xact_lock_shared(wa_notify._archive_move_lock());');
$r = WaHistory::maintain($node);
is($r->{moved}, 0, 'while a batch is staged, the move moves nothing...');
is_deeply($r->{deferred}, ['the move: captures were being staged'], '...and says it was deferred');
$stager->query_safe('COMMIT;');
$stager->quit;
$r = WaHistory::maintain($node);
is($r->{moved}, 1, 'the next run moves it');

$node->stop;
done_testing();

# maintain() and the shop never wait for each other (doc/retention.md): while
# a maintain() that dropped an old month still holds its locks, a checkout
# whose session allows no lock wait to speak of (lock_timeout) commits, and
# its capture is enqueued once maintain() is done; and a maintain() that
# finds a reader on the month it would drop waits only its own short
# lock_timeout, defers the drop, and drops it on the next run.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaNode;
use WaHistory;

my $node = WaNode::preloaded('never_waits');
$node->safe_psql('postgres', q{
CREATE EXTENSION wa_notify;
SELECT wa_notify.configure(enabled => false, log_retention_days => 0);
CREATE TABLE orders (id int PRIMARY KEY, phone text);
GRANT SELECT ON orders TO wa_notify_context;
SELECT wa_notify.watch('order_placed', 'orders', 'id',
    $$SELECT phone, id::text AS order_number FROM orders WHERE id = $1::int$$);
});
WaHistory::first_maintain_done($node);

# two archived months older than the 400 days set below
WaHistory::add($node, 'postgres', days => 500, order => 'A1');
WaHistory::add($node, 'postgres', days => 600, order => 'B1');
is(WaHistory::maintain($node)->{moved}, 2, 'two old messages archived');
my ($m500, $m600) = map {
	'wa_notify.' . $node->safe_psql('postgres', "SELECT wa_notify._archive_partition_name(now() - interval '$_ days')")
} (500, 600);
$node->safe_psql('postgres', 'SELECT wa_notify.configure(log_retention_days => 400)');

# a reader of the history holds the 500-day month...
my $reader = $node->background_psql('postgres');
$reader->query_safe(qq{BEGIN; SELECT count(*) FROM $m500;});
# ...maintain() drops the other one and holds its locks (its transaction open)
my $maint = $node->background_psql('postgres');
my $out = $maint->query_safe(q{BEGIN; SELECT r ->> 'dropped_partitions', r ->> 'deferred' FROM wa_notify.maintain() AS r;});
like($out, qr/\Q$m600\E/, 'maintain() dropped the 600-day month');
like($out, qr/dropping \Q$m500\E: a reader held it/, 'and deferred the month a reader holds, rather than wait');

# a checkout meanwhile: no lock wait allowed to speak of, and it commits
$node->safe_psql('postgres', q{SET lock_timeout = '100ms'; INSERT INTO orders VALUES (1, '(11) 98765-4321')});
pass('a checkout commits while maintain() holds its locks');
$maint->query_safe('COMMIT;');
$maint->quit;
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM wa_notify.message WHERE order_key = '1' AND resolved_at IS NOT NULL}),
	'its capture is enqueued');

$reader->query_safe('COMMIT;');
$reader->quit;
my $r = WaHistory::maintain($node);
is_deeply($r->{dropped_partitions}, [$m500], 'the deferred month is dropped on the next run');
is($node->safe_psql('postgres', q{SELECT count(*) FROM wa_notify.message_history WHERE order_key IN ('A1', 'B1')}),
	'0', 'both old months are gone');

$node->stop;
done_testing();

# pgmq's default-partition trap (doc/retention.md): an archived row whose
# month has no partition lands in the archive's default partition, and
# maintenance that silently stops there would keep it for ever.  The status
# card says so (history_problems), and maintain() gives the rows their
# month's partition.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaNode;
use WaHistory;

my $node = WaNode::preloaded('default_partition');
$node->safe_psql('postgres', 'CREATE EXTENSION wa_notify');
WaHistory::first_maintain_done($node);
is($node->safe_psql('postgres', 'SELECT history_problems IS NULL FROM wa_notify.status'), 't',
	'a fresh install has no history problem');

# the archive in use (maintain() made its partitions), then a row put
# straight into it (a restore, a hand-made fix) for a month maintain() has
# not made a partition for
WaHistory::add($node, 'postgres', days => 20, order => 'A1');
is(WaHistory::maintain($node)->{moved}, 1, 'a message archived');
WaHistory::add($node, 'postgres', days => 200, order => 'D1');
$node->safe_psql('postgres', q{
	WITH d AS (DELETE FROM wa_notify.message WHERE order_key = 'D1' RETURNING *)
	INSERT INTO wa_notify.message_archive SELECT * FROM d});
is($node->safe_psql('postgres', q{SELECT tableoid::regclass FROM wa_notify.message_archive WHERE order_key = 'D1'}),
	'wa_notify.message_archive_default', 'the row is in the default partition');
like($node->safe_psql('postgres', 'SELECT history_problems FROM wa_notify.status'),
	qr/^1 archived message\(s\) are in the default partition wa_notify\.message_archive_default because no monthly partition holds their month/,
	'the status card says so');

my $month = $node->safe_psql('postgres', q{SELECT wa_notify._archive_partition_name(now() - interval '200 days')});
my $r = WaHistory::maintain($node);
is_deeply($r->{created_partitions}, ["wa_notify.$month"], "maintain() makes the month's partition");
is("$r->{default_rows_moved} $r->{default_partition_rows}", '1 0', 'and moves the row there: the default is empty');
is($node->safe_psql('postgres', q{SELECT tableoid::regclass FROM wa_notify.message_archive WHERE order_key = 'D1'}),
	"wa_notify.$month", 'the row is in its month');
is($node->safe_psql('postgres', 'SELECT history_problems IS NULL FROM wa_notify.status'), 't',
	'the status card has nothing more to say');
is($node->safe_psql('postgres', q{SELECT count(*) FROM wa_notify.message_log WHERE order_key = 'D1'}), '1',
	'the message log still shows it');

WaHistory::tally_exact($node, 'postgres', 'after the rows of the default partition got their month');

$node->stop;
done_testing();

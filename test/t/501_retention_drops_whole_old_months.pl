# Retention (doc/retention.md): with log_retention_days set, maintain() drops
# the archive's monthly partitions wholly older than the limit (no DELETE
# over the history) and deletes the live rows older than it (a message stuck
# in review, or inserted with an old created_at); the months within the limit
# and their counts stay.  log_retention_days = 0 keeps everything.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaNode;
use WaHistory;

my $node = WaNode::preloaded('retention');
$node->safe_psql('postgres', q{CREATE EXTENSION wa_notify; SELECT wa_notify.configure(log_retention_days => 0)});
WaHistory::first_maintain_done($node);

# two messages 500 days old (one month), three 200 days old, and a message
# left in review 450 days ago (never final: it stays live)
WaHistory::add($node, 'postgres', days => 500, order => "Y$_") for 1 .. 2;
WaHistory::add($node, 'postgres', days => 200, order => "M$_") for 1 .. 3;
WaHistory::add($node, 'postgres', days => 450, order => 'STUCK', status => 'review');

my $r = WaHistory::maintain($node);
is($r->{moved}, 5, 'keeping for ever: the five final messages are archived, none removed');
is($r->{deleted} + @{ $r->{dropped_partitions} }, 0, 'nothing deleted or dropped with log_retention_days = 0');
my $old_month = $node->safe_psql('postgres',
	q{SELECT wa_notify._archive_partition_name(now() - interval '500 days')});
my $kept_month = $node->safe_psql('postgres',
	q{SELECT wa_notify._archive_partition_name(now() - interval '200 days')});
is($node->safe_psql('postgres', q{SELECT string_agg(tableoid::regclass::text || ' ' || order_key, ',' ORDER BY order_key)
                                    FROM wa_notify.message_archive}),
	join(',', map({ "wa_notify.$kept_month M$_" } 1 .. 3), map({ "wa_notify.$old_month Y$_" } 1 .. 2)),
	'each message in the partition of its month');

my $counts = q{SELECT total || ' ' || delivered || ' ' || review FROM wa_notify.counts(now() - interval '3 years', now())};
is($node->safe_psql('postgres', $counts), '6 5 1', 'counts() before: 6 messages, 5 delivered, 1 in review');

$node->safe_psql('postgres', 'SELECT wa_notify.configure(log_retention_days => 400)');
$r = WaHistory::maintain($node);
is($r->{dropped_partitions}[0], "wa_notify.$old_month", 'the month older than 400 days is dropped whole (oldest first)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM wa_notify._archive_partitions()
                                   WHERE hi <= now() - interval '400 days'}), '0',
	'and every other month partition older than the limit (made while moving, empty)');
is($r->{deleted}, 1, 'the live message older than the limit is deleted');
is_deeply($r->{deferred}, [], 'nothing deferred');
is($node->safe_psql('postgres', q{SELECT to_regclass('wa_notify.} . $old_month . q{') IS NULL}), 't',
	'its partition is gone');
is($node->safe_psql('postgres', $counts), '3 3 0', 'counts() after: the three messages of the kept month');
is($node->safe_psql('postgres', q{SELECT string_agg(order_key, ',' ORDER BY order_key) FROM wa_notify.message_log}),
	'M1,M2,M3', 'the message log shows the kept month');
WaHistory::tally_exact($node, 'postgres', 'after dropping a month');

$node->stop;
done_testing();

# Debian's prometheus-postgres-exporter, given wa_notify's custom queries
# (contrib/prometheus/wa_notify_queries.yaml) and a role that is only a
# member of pg_monitor, reports per sender what a known set of sends did:
# the queue by status, today's sent/delivered/read/failed counters, failures
# by error class, the oldest queued message's and the last callback's age,
# connection status, quality rating and tier as labels, pause state and the
# master switch; and the worker's restarts.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaMock;
use WaExporter;

plan skip_all => "$WaExporter::BINARY is not installed (Debian package prometheus-postgres-exporter; scripts/install-deps.sh installs it)"
  unless WaExporter::available();

my $mock = WaMock->new;
my $node = WaMock::setup_node('metrics', $mock);
sub sql { $node->safe_psql('postgres', $_[0]) }
# the exporter's role: pg_monitor and nothing else (doc/monitoring.md)
sql('CREATE ROLE wa_metrics LOGIN IN ROLE pg_monitor');

# five sends: three accepted (two then delivered, one of them read), one
# refused by Meta (131026, class recipient), then two left queued with the
# master switch off
my @phones = map { sprintf('55119%08d', 80000 + $_) } 1 .. 6;
$mock->control({ rules => { $phones[3] => { code => 131026 } } });
my @ids = map { WaMock::enqueue($node, 'order_placed', "P$_", $phones[ $_ - 1 ]) } 1 .. 4;
WaMock::wait_status($node, $_, 'sent') for @ids[0 .. 2];
WaMock::wait_status($node, $ids[3], 'failed');
my @wamids = map { sql("SELECT wamid FROM wa_notify.message WHERE id = $_") } @ids[0 .. 1];
# status payloads as Meta sends them (WaMock::webhook_status cites the page)
WaMock::webhook_status($node, $wamids[0], $phones[0], 'delivered');
WaMock::webhook_status($node, $wamids[1], $phones[1], 'delivered');
WaMock::webhook_status($node, $wamids[1], $phones[1], 'read');
WaMock::configure($node, enabled => 'false');
ok($node->poll_query_until('postgres',
	"SELECT query LIKE 'paused: master switch off%' FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'"),
	'the master switch is off');
WaMock::enqueue($node, 'order_placed', "P$_", $phones[ $_ - 1 ]) for 5 .. 6;
is(sql("SELECT error_class FROM wa_notify.message WHERE id = $ids[3]"), 'recipient', 'the refused one is a recipient failure');

my $exp = WaExporter->start($node, user => 'wa_metrics');
my $m = $exp->wait_for(sub { exists $_[0]{'wa_notify_worker_running'} });
ok($m && exists $m->{'wa_notify_worker_running'}, 'the exporter serves wa_notify metrics')
  or diag($exp->log_text);
is($m->{'pg_up'}, '1', 'the exporter reached the database');

my $s = 'sender="default"';
is($m->{"wa_notify_queue_messages{$s,status=\"$_->[0]\"}"}, $_->[1], "queue: $_->[0] = $_->[1]")
  for ([ 'queued', 2 ], [ 'held', 0 ], [ 'sending', 0 ], [ 'review', 0 ]);
is($m->{"wa_notify_messages_$_->[0]_today{$s}"}, $_->[1], "counter $_->[0]_today = $_->[1]")
  for ([ 'sent', 3 ], [ 'delivered', 2 ], [ 'read', 1 ], [ 'failed', 1 ]);
is($m->{"wa_notify_failures_failed_today{error_class=\"recipient\",$s}"}, '1', 'failures by class: recipient 1');
is(scalar(grep { /^wa_notify_failures_failed_today\{/ } keys %$m), 1, 'no other failure class');
cmp_ok($m->{"wa_notify_messages_oldest_queued_age_seconds{$s}"}, '>', 0, 'the oldest queued message has an age');
like($m->{"wa_notify_messages_webhook_last_callback_age_seconds{$s}"}, qr/^[0-9.e+-]+$/,
	'the last callback has an age (a number, not NaN)');
my $card = sql(q{SELECT api_status || ' ' || quality_rating || ' ' || messaging_limit || ' ' || throughput_level FROM wa_notify.state});
is($card, 'connected GREEN TIER_2K STANDARD', 'the connection check saw the mock number');
my $info = qq{api_status="connected",messaging_limit="TIER_2K",quality_rating="GREEN",$s,throughput_level="STANDARD"};
is($m->{"wa_notify_sender_connected{$info}"}, '1', 'connected, with status, quality and tier as labels');
is($m->{"wa_notify_sender_paused{$info}"}, '0', 'not paused');
is($m->{"wa_notify_sender_enabled{$info}"}, '0', 'the master switch is off');
is($m->{'wa_notify_worker_running'}, '1', 'the worker runs');
is($m->{'wa_notify_worker_restarts'}, '0', 'no restart yet');

# a restart of the worker is counted
my $pid = sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'");
sql("SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'wa_notify worker' AND pid <> $pid"),
	'the worker is back');
$m = $exp->wait_for(sub { ($_[0]{'wa_notify_worker_restarts'} // '') eq '1' });
is($m->{'wa_notify_worker_restarts'}, '1', 'the exporter counts the restart');
is(sql('SELECT worker_restarts FROM wa_notify.status'), '1', 'as the status card does');

# the metrics views stay off the history: with 3,000 messages of last month
# in the log, none of them reads wa_notify.message but through a bounded
# index range (the queued rows, the unanswered claims, today's rows).  (A
# minimum found by walking message_created from the oldest row once read
# the whole log: every row it passed shows as removed by a filter.)
sql(q{INSERT INTO wa_notify.message (event, order_key, phone, status, wamid, created_at, claimed_at, sent_at)
      SELECT 'order_placed', 'OLD' || g, '5511970000000', 'sent', 'wamid.OLD' || g,
             now() - interval '30 days', now() - interval '30 days', now() - interval '30 days'
        FROM generate_series(1, 3000) g;
      ANALYZE wa_notify.message});
for my $v (qw(metrics_queue metrics_messages metrics_failures))
{
	my $plan = sql("SET enable_seqscan = off; EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT * FROM wa_notify.$v");
	unlike($plan, qr/Seq Scan on message/, "$v: no scan of the log");
	my @removed = $plan =~ /Rows Removed by Filter: (\d+)/g;
	is(scalar(grep { $_ >= 3000 } @removed), 0, "$v: no read through last month's rows")
	  or diag($plan);
}

$exp->stop;
$node->stop;
done_testing();

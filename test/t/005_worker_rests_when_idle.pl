# The worker rests when there is nothing to do: it sleeps on its latch until
# a commit wakes it or its next due time comes.  Proved by counting, over 10
# idle seconds, the cluster's commits, the worker's CPU ticks and the latch
# wake-ups it handled (WaNode::worker_rest), in every idle state: extension
# missing, installed but not configured, configured, after a burst of 1,000
# messages, and on a hot standby.  1.0 woke itself with its own INSERT each
# cycle: ~12,000 commits/s and a whole core.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaMock;
use WaNode;

my $WINDOW = 10;            # seconds of rest measured
my $MAX_COMMITS = 5;        # the issue's bound over the window
my $MAX_TICKS = $WINDOW;    # 1% of one CPU: 0.1 s = 10 ticks at 100 Hz

sub rests
{
	my ($node, $state) = @_;
	my $r = WaNode::worker_rest($node, $WINDOW);
	cmp_ok($r->{commits}, '<', $MAX_COMMITS, "$state: fewer than $MAX_COMMITS commits in $WINDOW s");
	cmp_ok($r->{ticks}, '<', $MAX_TICKS, "$state: under 1% of a CPU");
	cmp_ok($r->{wakes}, '<=', 1, "$state: woken at most once");
	note("$state: $r->{commits} commits, $r->{ticks} ticks, $r->{wakes} wake-ups");
	return;
}

my $mock = WaMock->new;
my $node = WaNode::preloaded('rest', allows_streaming => 1,
	conf => "wa_notify.request_timeout = 2\n");
ok($node->poll_query_until('postgres',
	"SELECT query = 'waiting for CREATE EXTENSION wa_notify' FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'"),
	'the worker waits for the extension');
rests($node, 'no extension');

$node->safe_psql('postgres', 'CREATE EXTENSION wa_notify');
ok($node->poll_query_until('postgres',
	"SELECT query LIKE 'idle: access_token%' FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'"),
	'CREATE EXTENSION wakes the worker at its commit');
rests($node, 'not configured');

WaMock::configure($node, access_token => $WaMock::TOKEN, phone_number_id => $WaMock::PNID,
	business_account_id => $WaMock::WABA, api_base_url => $mock->base_url,
	min_delay => 0, max_delay => 0, max_rate => 0, recipient_gap => 0, max_per_batch => 100000);
ok($node->poll_query_until('postgres',
	"SELECT query = 'idle' FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'"),
	'configured: the worker goes idle');
rests($node, 'configured');

$node->safe_psql('postgres', q{
	INSERT INTO wa_notify.message (event, order_key, phone, params)
	SELECT 'order_placed', 'R' || g, '55119' || lpad(g::text, 8, '0'),
	       '{"customer_name": "Ana", "order_number": "1", "total": "10,00"}'
	  FROM generate_series(1, 1000) g});
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1000 FROM wa_notify.message WHERE status = 'sent'"), 'a burst of 1,000 is sent');
is(scalar @{ $mock->posts }, 1000, '1,000 requests at the mock');
ok($node->poll_query_until('postgres',
	"SELECT query = 'idle' FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'"),
	'idle after the burst');
rests($node, 'after a burst of 1,000');

# resting is not sleeping through work: a commit still wakes it at once
my $id = WaMock::enqueue($node, 'order_placed', 'R-after', '5511988887777');
WaMock::wait_status($node, $id, 'sent');

# a hot standby's worker rests too
$node->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('rest_standby');
$standby->init_from_backup($node, 'b', has_streaming => 1);
$standby->start;
ok($standby->poll_query_until('postgres',
	"SELECT query = 'standby: waiting for promotion' FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'"),
	'the standby worker waits for promotion');
rests($standby, 'hot standby');

$standby->stop;
$node->stop;
done_testing();

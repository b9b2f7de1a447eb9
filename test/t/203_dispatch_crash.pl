# kill -9 of the worker in the middle of a batch: under at_most_once no
# message is posted twice and the ones whose fate is unknown go to 'review';
# under at_least_once they are sent again.  Nothing is lost, nothing is left
# 'sending'.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaMock;

my $N = 40;
my $mock = WaMock->new;
my $node = WaMock::setup_node('crash', $mock, max_in_flight => 4,
	conf => "restart_after_crash = on\n");
sub sql { $node->safe_psql('postgres', $_[0]) }

sub crash_round
{
	my ($sem, $prefix) = @_;
	WaMock::configure($node, delivery_semantics => $sem);
	# 40 messages, 4 in flight, 1 s each: ~10 s of sending after the 6th
	# request arrives, so requests are surely in flight when the test,
	# however late on a busy machine, kills the worker
	$mock->control({ rules => { '*' => { delay => 1.0 } } });
	my $base = scalar @{ $mock->posts };
	my @ids = map { WaMock::enqueue($node, 'order_placed', "$prefix$_", sprintf('55119%08d', $prefix eq 'M' ? $_ : 50000 + $_)) } 1 .. $N;
	$mock->wait_posts($base + 6);
	my $pid = sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'");
	ok($pid > 0, "$sem: worker pid");
	my $sending = sql("SELECT count(*) FROM wa_notify.message WHERE status = 'sending'");
	ok($sending > 0, "$sem: messages in flight when the worker is killed ($sending)");
	kill 'KILL', $pid;
	# the postmaster restarts; the new worker recovers and goes on
	ok($node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM wa_notify.message WHERE status IN ('sending', 'queued') AND order_key LIKE '$prefix%'"),
		"$sem: every message reaches a final or review state");
	ok($node->poll_query_until('postgres',
		"SELECT pid <> $pid FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'"), "$sem: worker restarted");
	$mock->control({ rules => { '*' => undef } });
	return @ids;
}

# --- at_most_once ----------------------------------------------------------
my @ids = crash_round('at_most_once', 'M');
my %count;
$count{ $_->{json}{to} }++ for grep { $_->{json}{to} =~ /^55119000000/ } @{ $mock->posts };
is(scalar(grep { $_ > 1 } values %count), 0, 'at_most_once: no phone was posted twice');
my $st = sql("SELECT string_agg(DISTINCT status, ',' ORDER BY status) FROM wa_notify.message WHERE order_key LIKE 'M%'");
like($st, qr/^(review|sent)(,(review|sent))*$/, "at_most_once: statuses are sent or review ($st)");
ok(sql("SELECT count(*) FROM wa_notify.message WHERE order_key LIKE 'M%' AND status = 'review'") > 0,
	'at_most_once: in-flight messages went to review');
like(sql("SELECT error_message FROM wa_notify.message WHERE order_key LIKE 'M%' AND status = 'review' LIMIT 1"),
	qr/may or may not have been delivered/, 'review says why');
is(sql("SELECT count(*) FROM wa_notify.message WHERE order_key LIKE 'M%' AND status = 'sent'"),
	scalar(grep { $count{$_} } keys %count) - sql("SELECT count(*) FROM wa_notify.message WHERE order_key LIKE 'M%' AND status = 'review' AND phone IN ("
		. join(',', map { "'$_'" } keys %count) . ")"),
	'at_most_once: every sent message was posted once');

# --- at_least_once ---------------------------------------------------------
@ids = crash_round('at_least_once', 'L');
is(sql("SELECT count(*) FROM wa_notify.message WHERE order_key LIKE 'L%' AND status = 'sent'"), $N,
	'at_least_once: every message ends sent');
my %lc;
$lc{ $_->{json}{to} }++ for grep { $_->{json}{to} =~ /^55119000500/ } @{ $mock->posts };
is(scalar(keys %lc), $N, 'at_least_once: every phone got its message');
is(sql("SELECT count(*) FROM wa_notify.message WHERE status = 'sending'"), '0', 'nothing left sending');

$node->stop;
done_testing();

# High availability on pg_auto_failover: a monitor and two nodes on
# loopback, wa_notify preloaded on both and installed on the primary, a
# backlog drained through the mock (latency, so requests are in flight)
# while the formation fails over twice: `pg_autoctl perform failover`, then
# kill -9 of the new primary's postmaster.  Under at_most_once no message is
# lost (every one ends sent, none left in review after review_window) and
# none is posted twice at the mock; the worker on the new primary takes
# over; the relay, given a multi-host conninfo with
# target_session_attrs=read-write, follows the primary (503 during the
# switch, 200 after).  The mock sends a 'sent' status webhook through the
# relay for every message it accepted, retrying while the relay answers
# 503, as Meta does ("Status messages webhook reference",
# https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/status/).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaMock;
use WaRelay;
use WaAutoFailover;

plan skip_all => 'pg_auto_failover is not installed (Debian packages pg-auto-failover-cli, postgresql-15-auto-failover; scripts/install-deps.sh installs them)'
  unless WaAutoFailover::available();

my $N = 150;
my $SECRET = 'ha-app-secret-0123456789';
my $VERIFY = 'ha-verify-token-0123456789';
my $t_start = time;

my $f = WaAutoFailover->new;
my $a = $f->add_node('a', conf => "wa_notify.database = 'postgres'\nwa_notify.request_timeout = 5\n",
	auto_conf => "shared_preload_libraries = 'pg_stat_statements,wa_notify'\n");
ok($f->wait_state($a, 'single'), 'node a is the single primary') or diag($f->log('a'));
my $b = $f->add_node('b');
ok($f->wait_state($b, 'secondary'), 'node b is its secondary') or diag($f->log('b'));
ok($f->wait_state($a, 'primary'), 'node a is primary');
note(sprintf('formation up in %.1f s', time - $t_start));

my $mock = WaMock->new;
$a->safe_psql('postgres', 'CREATE EXTENSION wa_notify');
WaRelay::setup_role($a, $SECRET, $VERIFY);
WaMock::configure($a, access_token => $WaMock::TOKEN, phone_number_id => $WaMock::PNID,
	business_account_id => $WaMock::WABA, api_base_url => $mock->base_url,
	min_delay => 0, max_delay => 0, max_rate => 0, recipient_gap => 0, max_per_batch => 100000,
	max_in_flight => 4, review_window => 5);    # 5 s: below configure()'s floor, set directly
my $relay = WaRelay->start($a, conninfo => 'host=127.0.0.1,127.0.0.1 port=' . $a->port . ',' . $b->port
	  . ' dbname=postgres user=wa_webhook target_session_attrs=read-write connect_timeout=2');
$mock->control({ rules => { '*' => { delay => 0.5 } },
	webhook => { url => $relay->url, secret => $SECRET, delay => 0.2, retry_for => 120 } });

# the standby's worker waits; the primary's sends
ok($b->poll_query_until('postgres',
	"SELECT query = 'standby: waiting for promotion' FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'"),
	'the worker on the secondary waits for promotion');

$a->safe_psql('postgres', qq{
	INSERT INTO wa_notify.message (event, order_key, phone, params)
	SELECT 'order_placed', 'H' || g, '55119' || lpad(g::text, 8, '0'),
	       '{"customer_name": "Ana", "order_number": "1", "total": "10,00"}'
	  FROM generate_series(1, $N) g});

# relay probes: a status for an unknown wamid, answered 200 by a primary
my @probes;
sub probe
{
	my ($round) = @_;
	my ($code) = $relay->post_signed(WaRelay::status_payload("wamid.PROBE$round", 'delivered', 1700000000),
		$SECRET, max_time => 10);
	push @probes, [ $round, $code ];
	return $code;
}
# probe until the switch is over: $done says when, then a 200
sub probe_through
{
	my ($round, $done) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	my ($over, $code) = (0, '');
	while (time < $deadline)
	{
		$code = probe($round);
		$over ||= $done->();
		last if $over && $code eq '200';
		usleep(100_000);
	}
	return $code;
}
sub in_flight
{
	my ($node) = @_;
	return $node->safe_psql('postgres', q{SELECT count(*) FROM wa_notify.message WHERE status = 'sending'});
}
sub takeover_sql
{
	# this node's worker ran the recovery (state.worker_pid is its pid)
	return q{SELECT s.worker_pid = w.pid FROM wa_notify.state s, wa_notify._worker_shared() w};
}

# --- switch 1: pg_autoctl perform failover, requests in flight on a
$mock->wait_posts(12);
cmp_ok(in_flight($a), '>', 0, 'requests in flight on a when the failover starts');
my $posts_before_1 = scalar @{ $mock->posts };
my $t1 = time;
my $fo = $f->start_failover;
my $code = probe_through(1, sub { !$fo->pumpable || ($f->primary // $a) == $b });
$fo->finish;
is($code, '200', 'switch 1: the relay answers 200 after the failover');
ok($f->wait_state($b, 'primary', 'wait_primary'), 'b is the new primary');
ok($b->poll_query_until('postgres', takeover_sql()), "b's worker took over");
ok($b->poll_query_until('postgres', q{
	SELECT count(*) > 0 FROM wa_notify.message
	 WHERE claimed_at >= (SELECT worker_started_at FROM wa_notify.state)}),
	"b's worker sends");
note(sprintf('switch 1: b sends %.1f s after the failover began (%d POSTs before it)',
	time - $t1, $posts_before_1));

# --- switch 2: kill -9 of b's postmaster, requests in flight on b, once a
# is its synchronous secondary again (b "primary", no longer "wait_primary":
# a claim is on a before its request starts)
ok($f->wait_state($b, 'primary'), 'b is primary with a as its secondary');
ok($b->poll_query_until('postgres', q{SELECT count(*) > 0 FROM wa_notify.message WHERE status = 'sending'}),
	'requests in flight on b');
my $pm = $f->postmaster_pid($b);
ok($pm, "b's postmaster pid");
my $t2 = time;
kill 'KILL', $pm;
$code = probe_through(2, sub { my $p = $f->primary; $p && $f->postmaster_pid($p) && ($f->postmaster_pid($p) // 0) != $pm });
is($code, '200', 'switch 2: the relay answers 200 after the crash');
my $primary;
my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
until (($primary = $f->primary) && $primary->psql('postgres', 'SELECT 1') == 0)
{
	last if time > $deadline;
	usleep(200_000);
}
ok($primary, 'a primary after the crash (' . ($primary ? $primary->name : 'none') . ')');
ok($primary->poll_query_until('postgres', takeover_sql()), 'its worker took over');
note(sprintf('switch 2: worker back %.1f s after the kill, on %s', time - $t2, $primary->name));

# --- everything ends sent, exactly once
ok($primary->poll_query_until('postgres', qq{
	SELECT count(*) = $N FROM wa_notify.message WHERE status IN ('sent', 'delivered', 'read', 'failed')}),
	'every message reaches a final state (none lost, none left in review)')
  or diag($primary->safe_psql('postgres', 'SELECT status, count(*) FROM wa_notify.message GROUP BY 1'));
is($primary->safe_psql('postgres', q{SELECT string_agg(DISTINCT status, ',') FROM wa_notify.message}),
	'sent', 'all of them sent');
my %per_phone;
$per_phone{ $_->{json}{to} }++ for @{ $mock->posts };
is(scalar(keys %per_phone), $N, 'every customer was posted to');
is(scalar(grep { $_ > 1 } values %per_phone), 0, 'no message posted twice (at_most_once)');
my $requeued = $primary->safe_psql('postgres', 'SELECT count(*) FROM wa_notify.message WHERE review_requeues > 0');
my $by_status = $primary->safe_psql('postgres',
	q{SELECT count(*) FROM wa_notify.message WHERE review_requeues = 0 AND wamid LIKE 'wamid.MOCK%'});
note("$requeued message(s) queued again from review; $by_status sent with the mock's wamid");

# the relay followed the primary: 503 while no node was writable, 200 after
my %codes;
$codes{ $_->[1] }++ for @probes;
note('relay probes: ' . join(', ', map { "$_ x$codes{$_}" } sort keys %codes)
	. '; switch 1: ' . join(' ', map { $_->[1] } grep { $_->[0] == 1 } @probes)
	. '; switch 2: ' . join(' ', map { $_->[1] } grep { $_->[0] == 2 } @probes));
is(scalar(grep { $_ ne '200' && $_ ne '503' } keys %codes), 0, 'the relay answered only 200 or 503');
ok(($codes{503} // 0) > 0, 'the relay answered 503 while no node was writable');
# the mock's status webhooks: each retried until the relay answered 200
my %last;
$last{ $_->{wamid} } = $_->{status} for grep { $_->{method} eq 'WEBHOOK' } @{ $mock->requests };
is(scalar(grep { $_ != 200 } values %last), 0, "every status webhook ended 200 (" . scalar(keys %last) . ')');
note(sprintf('total %.1f s', time - $t_start));

$relay->stop;
$f->stop;
done_testing();

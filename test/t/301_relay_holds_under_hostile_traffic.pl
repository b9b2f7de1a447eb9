# wa_notify_relay stays on the air under hostile traffic (issue 11):
# - 100 concurrent 3 MB bodies without a signature are answered 401 before a
#   byte of them is read, and 100 with a wrong signature are answered 403 or
#   503 (body budget) while the relay's peak RSS stays under its body budget
#   plus a constant; nothing changes in the database;
# - 1,100 half-open connections and 200 trickling ones (more than select()'s
#   FD_SETSIZE) from many loopback addresses, and one address over its
#   per-IP limit, while a well-behaved client gets /healthz 200 and a signed
#   webhook applied; the relay closes every one of them at request_timeout,
#   even those that keep trickling; one log line per burst, not one per
#   connection.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaNode;
use WaRelay;

# 1,300 attack sockets + 100 over the per-IP limit + the relay's own (before
# PostgreSQL::Test::Utils takes over the output, at INIT)
BEGIN { WaRelay::need_open_files(4096); }

my $secret = 'hostile-test-app-secret';
my $token = 'hostile-verify-token-31';
my $node = WaNode::preloaded('hostile');
$node->safe_psql('postgres', q{
CREATE EXTENSION wa_notify;
INSERT INTO wa_notify.message (id, event, order_key, phone, status, wamid) VALUES
  (1, 'order_placed', '1', '5511987654321', 'sent', 'wamid.H1'),
  (2, 'order_placed', '2', '5511987654322', 'sent', 'wamid.H2');
});
WaRelay::setup_role($node, $secret, $token);

my $mb = 1024 * 1024;
my $budget = 16 * $mb;
my $max_body = 3 * $mb;
my $pool = 2;
my $relay = WaRelay->start($node, body_budget => $budget, pool_size => $pool,
	request_timeout => 4, per_ip_connection_limit => 64);
my $snapshot = q{SELECT md5(string_agg(m::text, '|' ORDER BY id)) FROM wa_notify.message m};
my $before = $node->safe_psql('postgres', $snapshot);

# --- memory --------------------------------------------------------------
my %st = $relay->proc_status;
my $base_kb = $st{VmHWM};
my @codes = $relay->uploads(100, 3_000_000);
is(scalar(grep { $_ eq '401' } @codes), 100, '100 concurrent unsigned 3 MB bodies: all 401');

@codes = $relay->uploads(100, 3_000_000, headers => [ 'X-Hub-Signature-256: sha256=' . ('0' x 64) ]);
my %seen;
$seen{$_}++ for @codes;
is(scalar(grep { $_ ne '403' && $_ ne '503' } @codes), 0,
	'100 concurrent wrongly signed 3 MB bodies: each 403 or 503 (' . join(', ', map { "$_ x $seen{$_}" } sort keys %seen) . ')');
ok(($seen{503} // 0) > 0, 'some were refused 503 over the body budget');
like(slurp_file($relay->logfile), qr/POST \/hook status=503 bytes=0 ms=\d+/,
	'budget refusals are logged, without reading the body');
%st = $relay->proc_status;
# the budget, libpq's send buffer per pool connection (it keeps its size),
# and a constant for the program, its threads and connection buffers
my $bound_kb = ($budget + $pool * $max_body) / 1024 + 32 * 1024;
cmp_ok($st{VmHWM}, '<', $bound_kb,
	"peak RSS $st{VmHWM} kB (from $base_kb kB) under the budget plus a constant ($bound_kb kB)");
is($node->safe_psql('postgres', $snapshot), $before, 'no message changed');

# --- connections -----------------------------------------------------------
# 1,100 half-open (a request line, no more) and 200 trickling ones, 50 per
# loopback address (under the per-IP limit of 64), then 100 from one address
my $half = $relay->hold(count => 1100, from => 2, prefix => "POST /hook HTTP/1.1\r\nHost: x\r\n");
my $trickle = $relay->hold(count => 200, from => 100, prefix => "POST /hook HTTP/1.1\r\nX-Slow: ");
my $one_ip = $relay->hold(count => 100, net => 1, from => 1, per_addr => 100);
my $open = WaRelay::poll_held($one_ip, undef, 0);
my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
while ($open > 64 && time() < $deadline)
{
	$open = WaRelay::poll_held($one_ip, undef, 0.2);
}
cmp_ok($open, '<=', 64, '100 connections from one address: no more than the per-IP limit (64) kept');

my ($code, $body) = $relay->http(url => $relay->base . '/healthz', max_time => 2);
is($code, '200', '/healthz answers 200 while 1,364 attack connections are open');
like($body, qr/^degraded: .*connections refused over connection_limit or per_ip_connection_limit/,
	'/healthz says it is degraded, and why');
($code, $body) = $relay->post_signed(WaRelay::status_payload('wamid.H1', 'delivered', '1700000100'),
	$secret, max_time => 2);
is($code, '200', 'a signed webhook is answered 200 within 2 s meanwhile');
is($node->safe_psql('postgres', 'SELECT status FROM wa_notify.message WHERE id = 1'), 'delivered',
	'and applied');

# keep trickling (a byte a second, under the idle timeout) until the relay
# has closed everything: only the absolute request deadline can close these
my $left = WaRelay::poll_held($half, undef, 0) + WaRelay::poll_held($trickle, 'x', 0);
while ($left > 0 && time() < $deadline)
{
	$left = WaRelay::poll_held($trickle, 'x', 1) + WaRelay::poll_held($half, undef, 0)
	  + WaRelay::poll_held($one_ip, undef, 0);
}
is($half->{closed}, 1100, 'every half-open connection was closed by the relay');
is($trickle->{closed}, 200, 'every trickling connection was closed, though it kept sending');
WaRelay::release($_) for $half, $trickle, $one_ip;

# the log: one line per burst, not one per connection
ok($relay->wait_log(qr/closed at the request deadline \d+ connections/),
	'the deadline closes are logged');
my $log = slurp_file($relay->logfile);
my @refused = $log =~ /refused (\d+) connections in/g;
is(scalar(@refused), 1, 'one log line for the burst of refused connections');
is($refused[0], 36, 'it counts the 36 refused');
my @closed = $log =~ /closed at the request deadline (\d+) connections/g;
cmp_ok(scalar(@closed), '<', 10, 'a handful of lines for 1,364 overdue connections');
unlike($log, qr/Server reached connection limit/, 'no line per refused connection');
my $mhd_lines = () = $log =~ /libmicrohttpd: /g;
cmp_ok($mhd_lines, '<', 30, "libmicrohttpd's own messages are summarised ($mhd_lines lines)");

ok($relay->stop, 'relay exits 0 on SIGTERM');
$node->stop;
done_testing();


# The database never holds a relay request hostage, and nothing secret
# reaches the server log from the relay's calls (issue 11):
# - with log_statement = all, the verify token of a handshake is in the
#   server log until the relay's role has log_parameter_max_length = 0 (the
#   set-up doc/roles.md documents), and nowhere after it;
# - an open transaction holding wa_notify.state (the "last callback" row):
#   signed webhooks are answered 200 within statement_timeout plus a second
#   and applied; the callback is not recorded meanwhile, and is after;
# - an open transaction holding a message row: that message's webhook is
#   answered 503 at lock_timeout (Meta retries), /healthz and other
#   webhooks answer meanwhile; after the commit the retry is applied;
# - a lock wait cut by statement_timeout also answers 503.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use IPC::Run;
use WaNode;
use WaRelay;

my $secret = 'slowdb-test-app-secret';
my $token = 'slowdb-verify-token-5719';
my $node = WaNode::preloaded('slowdb', conf => "log_statement = all\n");
$node->safe_psql('postgres', q{
CREATE EXTENSION wa_notify;
INSERT INTO wa_notify.message (id, event, order_key, phone, status, wamid)
SELECT i, 'order_placed', i::text, '55119876543' || lpad(i::text, 2, '0'), 'sent', 'wamid.S' || i
  FROM generate_series(1, 20) i;
});
WaRelay::setup_role($node, $secret, $token);
# lock_timeout long enough for the test to see the wait in pg_stat_activity
my %limits = (statement_timeout => 5000, lock_timeout => 3000, pool_size => 2);
my $max_time = 5 + 1;    # statement_timeout plus a second
my $handshake = "?hub.mode=subscribe&hub.verify_token=$token&hub.challenge=4242";

# --- the verify token and the server log ----------------------------------
my $relay = WaRelay->start($node, %limits);
my $pos = -s $node->logfile;
my ($code, $body) = $relay->http(url => $relay->url . $handshake);
is("$code $body", '200 4242', 'handshake answered');
# two guards: the library's log hook drops the bind parameters of a
# webhook_verify statement (secrets.c), and the role's
# log_parameter_max_length = 0 keeps PostgreSQL from printing them at all
my $before = slurp_file($node->logfile, $pos);
like($before, qr/execute [^\n]*webhook_verify/, 'before the role set-up, the handshake is logged');
unlike($before, qr/\Q$token\E/, 'but not the verify token (the log hook drops the parameters)');
($code, $body) = $relay->http(url => $relay->base . '/healthz');
like($body, qr/^degraded: .*log_parameter_max_length is not 0/, '/healthz says so');
ok($relay->stop, 'relay stopped');

$node->safe_psql('postgres', 'ALTER ROLE wa_webhook SET log_parameter_max_length = 0');
$relay = WaRelay->start($node, %limits);
$pos = -s $node->logfile;
($code, $body) = $relay->http(url => $relay->url . $handshake);
is("$code $body", '200 4242', 'handshake answered after the role set-up');
($code) = $relay->http(url => $relay->url . '?hub.mode=subscribe&hub.verify_token=not-it-' . $token . '&hub.challenge=1');
is($code, '403', 'a wrong token: 403');
my $logged = slurp_file($node->logfile, $pos);
like($logged, qr/execute [^\n]*webhook_verify/, 'the handshake statements are in the server log');
unlike($logged, qr/\Q$token\E/, 'the verify token is not');
($code, $body) = $relay->http(url => $relay->base . '/healthz');
is("$code $body", "200 ok\n", '/healthz: ok');

# --- an open transaction holds the state row --------------------------------
my $admin = $node->background_psql('postgres');
$admin->query_safe('BEGIN');
$admin->query_safe('UPDATE wa_notify.state SET settings_changed_at = now()');
for my $i (1 .. 6)
{
	($code) = $relay->post_signed(WaRelay::status_payload("wamid.S$i", 'delivered', 1700000000 + $i),
		$secret, max_time => $max_time);
	is($code, '200', "webhook $i answered 200 while an admin transaction holds wa_notify.state");
}
is($node->safe_psql('postgres', q{SELECT count(*) FROM wa_notify.message WHERE status = 'delivered'}),
	'6', 'the six statuses are applied');
is($node->safe_psql('postgres', 'SELECT webhook_last_callback IS NULL FROM wa_notify.state'),
	't', 'last callback skipped while the row is locked');
$admin->query_safe('COMMIT');
($code) = $relay->post_signed(WaRelay::status_payload('wamid.S7', 'delivered', 1700000007), $secret,
	max_time => $max_time);
is($code, '200', 'a webhook after the commit: 200');
is($node->safe_psql('postgres', 'SELECT webhook_last_callback IS NOT NULL FROM wa_notify.state'),
	't', 'last callback recorded again once the row is free');

# --- an open transaction holds a message row --------------------------------
$admin->query_safe('BEGIN');
$admin->query_safe('SELECT 1 FROM wa_notify.message WHERE id = 10 FOR UPDATE');
my $held_body = WaRelay::status_payload('wamid.S10', 'read', 1700000010);
my ($bg_out, $bg_err) = ('', '');
my $bg = IPC::Run::start(
	[ 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', $max_time, '-X', 'POST',
		'-H', 'X-Hub-Signature-256: ' . WaRelay::signature($held_body, $secret),
		'--data-binary', $held_body, $relay->url ],
	'>', \$bg_out, '2>', \$bg_err);
# wait until the relay's statement waits on the row lock, then ask the others
ok($node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM pg_stat_activity
  WHERE usename = 'wa_webhook' AND wait_event_type = 'Lock'}), 'the webhook waits on the row lock');
($code, $body) = $relay->http(url => $relay->base . '/healthz', max_time => $max_time);
is($code, '200', '/healthz answers meanwhile');
($code) = $relay->post_signed(WaRelay::status_payload('wamid.S11', 'read', 1700000011), $secret,
	max_time => $max_time);
is($code, '200', 'a webhook for another message answers 200 meanwhile');
$bg->finish;
is($bg_out, '503', 'the held message\'s webhook: 503 at lock_timeout, within statement_timeout plus a second');
like($relay->log_text, qr/POST \/hook status=503 [^\n]*sqlstate=55P03/, 'logged with its SQLSTATE');
is($node->safe_psql('postgres', 'SELECT status FROM wa_notify.message WHERE id = 10'), 'sent',
	'nothing applied for it');
$admin->query_safe('COMMIT');
($code) = $relay->post_signed($held_body, $secret, max_time => $max_time);
is($code, '200', 'Meta\'s retry after the commit: 200');
is($node->safe_psql('postgres', 'SELECT status FROM wa_notify.message WHERE id = 10'), 'read',
	'and applied');
ok($relay->stop, 'relay stopped');

# --- statement_timeout cuts a wait that lock_timeout would not --------------
$relay = WaRelay->start($node, statement_timeout => 1000, lock_timeout => 60000, pool_size => 2);
$admin->query_safe('BEGIN');
$admin->query_safe('SELECT 1 FROM wa_notify.message WHERE id = 12 FOR UPDATE');
($code) = $relay->post_signed(WaRelay::status_payload('wamid.S12', 'read', 1700000012), $secret,
	max_time => 1 + 1);
is($code, '503', 'statement_timeout: 503 within statement_timeout plus a second');
like($relay->log_text, qr/POST \/hook status=503 [^\n]*sqlstate=57014/, 'logged with its SQLSTATE');
$admin->query_safe('COMMIT');
$admin->quit;
ok($relay->stop, 'relay stopped');

$node->stop;
done_testing();

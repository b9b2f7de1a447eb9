# wa_notify_relay end to end: Meta's GET handshake and signed POSTs reach
# webhook_verify()/webhook_receive() through the relay, as a role that may
# call those two functions only; every HTTP answer of doc/design.md, "Webhooks"; the
# body byte for byte; the cap (Content-Length and chunked); /healthz; a
# database restart under a running relay; SIGTERM; no secrets in the log.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaNode;
use WaRelay;
use IPC::Run;

my $secret = 'relay-test-app-secret';
my $token = 'relay-verify-token-77';

my $node = WaNode::preloaded('relay');
$node->safe_psql('postgres', q{
CREATE EXTENSION wa_notify;
INSERT INTO wa_notify.message (id, event, order_key, phone, status, wamid) VALUES
  (1, 'order_placed', '1', '5511987654321', 'sent', 'wamid.R1'),
  (2, 'order_placed', '2', '5511987654322', 'sent', 'wamid.R2'),
  (3, 'order_placed', '3', '5511987654323', 'sent', 'wamid.R3');
});
WaRelay::setup_role($node, $secret, $token);

my $relay_bin = 'wa_notify_relay';    # installed into bindir, on PATH here
my $max_body = 65536;
my $path = '/meta/webhook';
# the config file gives everything; --path on the command line wins over it
my $relay = WaRelay->start($node, max_body => $max_body, pool_size => 2,
	cli => [ '--path', $path ], cli_path => $path);
my $base = $relay->base;
my $tmp = PostgreSQL::Test::Utils::tempdir();
my $log = $relay->logfile;

sub http { return $relay->http(@_) }
sub post_signed
{
	my ($body, %a) = @_;
	return $relay->post_signed($body, delete $a{secret} // $secret, %a);
}
sub wait_health { return $relay->wait_health(@_) }
sub status_payload { return WaRelay::status_payload(@_) }

ok(wait_health('200'), 'healthz answers 200 once the relay is up');

# --- the handshake -------------------------------------------------------
my ($code, $body) = http(url => "$base$path?hub.mode=subscribe&hub.verify_token=$token&hub.challenge=1158201444");
is($code, '200', 'handshake with the right token: 200');
is($body, '1158201444', 'handshake answers the challenge exactly');
($code) = http(url => "$base$path?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1158201444");
is($code, '403', 'handshake with a wrong token: 403');
($code) = http(url => "$base$path?hub.verify_token=$token&hub.challenge=1");
is($code, '403', 'handshake without hub.mode: 403');
is($node->safe_psql('postgres', 'SELECT webhook_last_verified IS NOT NULL FROM wa_notify.state'),
	't', 'last verified recorded');

# --- a signed status with non-ASCII bytes, CR LF and an emoji -------------
my $details = "Mensagem n\x{e3}o entregue \x{2014} a\x{e7}\x{e3}o \x{1F4E6}";
my $details_utf8 = $details;
utf8::encode($details_utf8);
my $failed = status_payload('wamid.R1', 'failed', '1700000100',
	qq(,\r\n "errors":[{"code":131047,"title":"Re-engagement message","message":"Re-engagement message","error_data":{"details":"$details_utf8"}}]));
($code, $body) = post_signed($failed);
is($code, '200', 'signed POST: 200');
like($body, qr/"applied": 1/, 'the relay answers what was applied');
my $stored = $node->safe_psql('postgres',
	"SELECT status || '|' || error_code || '|' || error_message FROM wa_notify.message WHERE id = 1");
utf8::decode($stored);
like($stored, qr/^failed\|131047\|\(#131047\) Re-engagement message: \Q$details\E Hint: /,
	'non-ASCII details stored exactly (the signature matched the raw bytes)');
($code, $body) = post_signed($failed);
is($code, '200', 'the same POST again: 200');
like($body, qr/"unchanged": 1/, 'a duplicate changes nothing');

# a body that is not UTF-8 nor JSON, correctly signed: the signature matches,
# so the bytes arrived unchanged, and the payload is refused as malformed
($code) = post_signed("{\"x\":\"\xe9\x00\xff\"}\r\n");
is($code, '400', 'raw bytes pass unchanged (signature ok) and are malformed: 400');

# --- every other answer ---------------------------------------------------
my $good = status_payload('wamid.R2', 'delivered', '1700000200');
($code) = post_signed($good, secret => 'not-the-secret');
is($code, '403', 'bad signature: 403');
($code) = http(method => 'POST', url => "$base$path", body => $good);
is($code, '401', 'no signature header: 401');
($code) = post_signed('{"object":"whatsapp_business_account","entry":[');
is($code, '400', 'malformed JSON: 400');
($code) = post_signed('{"object":"page","entry":[]}');
is($code, '400', 'not a WhatsApp Business webhook: 400');
($code) = post_signed('x' x ($max_body + 1));
is($code, '413', 'over the cap by Content-Length: 413');
($code) = post_signed('x' x ($max_body * 2), headers => ['Transfer-Encoding: chunked']);
is($code, '413', 'over the cap while streaming (chunked): 413');
($code) = post_signed($good, headers => ['Transfer-Encoding: chunked']);
is($code, '200', 'a chunked body under the cap: 200');
($code) = http(url => "$base/elsewhere");
is($code, '404', 'another path: 404');
($code) = http(method => 'PUT', url => "$base$path", body => $good);
is($code, '405', 'another method: 405');
$node->safe_psql('postgres', "UPDATE wa_notify.setting SET value = NULL WHERE name = 'app_secret'");
($code) = post_signed(status_payload('wamid.R3', 'sent', '1700000300'));
is($code, '500', 'app secret not configured: 500 (Meta retries)');
$node->safe_psql('postgres', "UPDATE wa_notify.setting SET value = '$secret' WHERE name = 'app_secret'");
is($node->safe_psql('postgres', 'SELECT status FROM wa_notify.message WHERE id = 3'), 'sent',
	'refused POSTs changed nothing');
is($node->safe_psql('postgres', 'SELECT status FROM wa_notify.message WHERE id = 2'), 'delivered',
	'the chunked POST was applied');

# --- database restart while the relay runs --------------------------------
$node->stop('fast');
($code) = http(url => "$base/healthz");
is($code, '503', 'healthz: 503 while the database is down');
($code) = post_signed(status_payload('wamid.R3', 'delivered', '1700000400'));
is($code, '503', 'POST: 503 while the database is down (Meta retries)');
$node->start;
ok(wait_health('200'), 'healthz: 200 again after the restart');
($code) = post_signed(status_payload('wamid.R3', 'delivered', '1700000400'));
is($code, '200', 'POST after the restart: 200 (reconnected)');
is($node->safe_psql('postgres', 'SELECT status FROM wa_notify.message WHERE id = 3'), 'delivered',
	'the retried delivery is applied');

# --- a second relay configured by libpq's environment only ----------------
my $port2 = PostgreSQL::Test::Cluster::get_free_port();
my $relay2;
{
	local $ENV{PGHOST} = $node->host;
	local $ENV{PGPORT} = $node->port;
	local $ENV{PGDATABASE} = 'postgres';
	local $ENV{PGUSER} = 'wa_webhook';
	$relay2 = IPC::Run::start([ $relay_bin, "--listen=127.0.0.1:$port2" ],
		'<', \undef, '>', "$tmp/relay2.out", '2>', "$tmp/relay2.log");
}
ok(wait_health('200', "http://127.0.0.1:$port2/healthz"), 'relay from PG* environment: healthz 200');
($code, $body) = http(url => "http://127.0.0.1:$port2/webhook?hub.mode=subscribe&hub.verify_token=$token&hub.challenge=abc");
is("$code $body", '200 abc', 'default path /webhook answers the handshake');

# --- SIGTERM: both exit cleanly --------------------------------------------
$relay2->signal('TERM');
ok($relay->stop, 'relay exits 0 on SIGTERM');
ok($relay2->finish, 'second relay exits 0 on SIGTERM');

my $logtext = slurp_file($log);
like($logtext, qr/127\.0\.0\.1 POST \/meta\/webhook status=200 bytes=\d+/, 'one line per request');
like($logtext, qr/POST \/meta\/webhook status=403 bytes=\d+ ms=[\d.]+ sqlstate=28000/, 'refusals logged with their SQLSTATE');
like($logtext, qr/stopped/, 'shutdown logged');
unlike($logtext, qr/\Q$token\E/, 'the verify token is not logged');
unlike($logtext, qr/\Q$secret\E/, 'the app secret is not logged');
unlike($logtext, qr/wamid\.R|Re-engagement|1158201444/, 'no body or query string logged');

$node->stop;
done_testing();

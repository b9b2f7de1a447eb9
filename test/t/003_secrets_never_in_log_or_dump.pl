# The access token, the app secret and the verify token never reach the
# server log nor pg_dump's output:
#  - set with configure() (the trial way), at default logging settings:
#    good and failing configure() calls (range, pattern, unknown argument,
#    syntax error) and a relay handshake leave none in the log; pg_dump
#    writes none; an idle session's pg_stat_activity row shows no secret;
#  - read from wa_notify.secrets_file (the production way), under
#    log_statement = all and log_min_error_statement = debug5: the worker
#    sends with the file's token, the relay's handshake and a signed POST
#    use the file's verify token and app secret, and none is in the log;
#    a file that group or others can read is refused with a log line;
#    configure() refuses the secrets with a hint naming the file.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaNode;
use WaMock;
use WaRelay;

my $mock = WaMock->new;
# the server's defaults (the test framework logs every statement otherwise)
my $node = WaNode::preloaded('secrets', conf => "wa_notify.request_timeout = 2\n"
	  . "log_statement = none\nlog_min_error_statement = error\n");
$node->safe_psql('postgres', 'CREATE EXTENSION wa_notify');
WaRelay::create_role($node);
my $relay = WaRelay->start($node);

# every secret value this test uses: none may ever be in the log
my %secret = (
	token_good  => 'EAAGsecretTokenGood000000000001',
	secret_good => 'AppSecretGood0000000000000000001',
	verify_good => 'verify-token-good-00000000000001',
	token_range => 'EAAGsecretTokenRange00000000002',
	secret_bad  => 'App Secret With Spaces 0000003',
	token_arg   => 'EAAGsecretTokenBadArg0000000004',
	token_syntax => 'EAAGsecretTokenSyntax000000005',
	token_idle  => 'EAAGsecretTokenIdle00000000006',
	token_file  => 'EAAGsecretTokenFromFile0000007',
	secret_file => 'AppSecretFromFile000000000000007',
	verify_file => 'verify-token-from-file-000000007',
	token_refused => 'EAAGsecretTokenRefused00000008',
	# a second sender's (25_senders.sql)
	sender_token => 'EAAGsecretTokenSender2000000009',
	sender_secret => 'AppSecretSender2000000000000009',
	sender_bad   => 'EAAG secret token with spaces 10',
	sender_file  => 'EAAGsecretTokenSender2File00011',
	sender_refused => 'EAAGsecretTokenSender2Refused12',);

sub log_hits
{
	my $log = slurp_file($node->logfile);
	return join(', ', grep { index($log, $secret{$_}) >= 0 } sort keys %secret);
}

# --- configure(), default logging settings --------------------------------
$node->safe_psql('postgres', qq{
SELECT wa_notify.configure(access_token => '$secret{token_good}', app_secret => '$secret{secret_good}',
                           webhook_verify_token => '$secret{verify_good}',
                           phone_number_id => '$WaMock::PNID', api_base_url => '@{[$mock->base_url]}',
                           min_delay => 0, max_delay => 0, max_rate => 0, recipient_gap => 0)});
my %fail = (
	range   => "SELECT wa_notify.configure(access_token => '$secret{token_range}', polling_interval => 5)",
	pattern => "SELECT wa_notify.configure(app_secret => '$secret{secret_bad}')",
	unknown => "SELECT wa_notify.configure(access_token => '$secret{token_arg}', no_such_setting => 1)",
	syntax  => "SELECT wa_notify.configure(access_token => '$secret{token_syntax}'",);
my %state = (range => '22023', pattern => '22023', unknown => '42883', syntax => '42601');
for my $k (sort keys %fail)
{
	my ($ret, $out, $err) = $node->psql('postgres', "\\set VERBOSITY sqlstate\n$fail{$k};");
	like($err, qr/ERROR:\s+$state{$k}/, "a failing configure() ($k) fails with $state{$k}");
}
# a second sender's secrets, in plain SQL text: stored, never logged
$node->safe_psql('postgres', qq{
SELECT wa_notify.configure_sender('store_2', phone_number_id => '209876543210987',
       access_token => '$secret{sender_token}', app_secret => '$secret{sender_secret}')});
{
	my ($ret, $out, $err) = $node->psql('postgres', "\\set VERBOSITY sqlstate\n"
		  . "SELECT wa_notify.configure_sender('store_2', access_token => '$secret{sender_bad}');");
	like($err, qr/ERROR:\s+22023/, 'a failing configure_sender() fails with 22023');
}
is($node->safe_psql('postgres', q{SELECT access_token_set, app_secret_set FROM wa_notify.senders
                                   WHERE sender = 'store_2'}), 't|t', "store_2's secrets are set");
my ($code, $body) = $relay->handshake($secret{verify_good}, '1158201444');
is("$code $body", '200 1158201444', 'relay handshake with the configured verify token');

# an idle admin session: pg_stat_activity shows a placeholder, not its last
# statement, whether configure() ran or failed before it could run
sub idle_query
{
	my ($sql) = @_;
	my ($in, $out) = ('', '');
	my $psql = IPC::Run::start([ 'psql', '-X', '-q', '-d', $node->connstr('postgres') ],
		'<', \$in, '>', \$out, '2>', \$out);
	$in .= "SET application_name = 'idle_admin';\n$sql\n";
	$psql->pump while length $in;
	$node->poll_query_until('postgres', q{
SELECT state = 'idle' AND query NOT LIKE 'SET%' FROM pg_stat_activity WHERE application_name = 'idle_admin'})
	  or diag('the session did not go idle');
	my $shown = $node->safe_psql('postgres',
		"SELECT query FROM pg_stat_activity WHERE application_name = 'idle_admin'");
	$in .= "\\q\n";
	$psql->finish;
	return $shown;
}
for my $sql ("SELECT wa_notify.configure(access_token => '$secret{token_idle}');",
	"SELECT wa_notify.configure(access_token => '$secret{token_idle}', no_such_setting => 1);",
	"SELECT wa_notify.configure_sender('store_2', access_token => '$secret{token_idle}');")
{
	my $shown = idle_query($sql);
	unlike($shown, qr/\Q$secret{token_idle}\E/, "pg_stat_activity does not show the secret of an idle session ($sql)");
	like($shown, qr/hidden by wa_notify/, 'it shows a placeholder instead');
}

my $log = slurp_file($node->logfile);
like($log, qr/ERROR:  value for polling_interval|ERROR:  .*polling_interval/, 'the failing calls were logged');
like($log, qr/ERROR:  syntax error/, 'the syntax error was logged');
is(log_hits(), '', 'no secret in the server log at default settings');

# --- pg_dump ----------------------------------------------------------------
my ($dump, $dump_err) = ('', '');
IPC::Run::run([ 'pg_dump', '-d', $node->connstr('postgres') ], '>', \$dump, '2>', \$dump_err)
  or die "pg_dump: $dump_err";
like($dump, qr/phone_number_id\t\Q$WaMock::PNID\E/, 'the dump holds the settings');
my $key = $node->safe_psql('postgres', "SELECT value FROM wa_notify.setting WHERE name = 'callback_key'");
my @in_dump = grep { index($dump, $secret{$_}) >= 0 } sort keys %secret;
push @in_dump, 'callback_key' if index($dump, $key) >= 0;
is(join(', ', @in_dump), '', 'no secret in the pg_dump output');

# --- the secrets file ---------------------------------------------------------
my $file = $node->basedir . '/wa_notify_secrets.conf';
open(my $fh, '>', $file) or die;
print $fh "# wa_notify secrets\naccess_token = $secret{token_file}\n"
  . "app_secret = $secret{secret_file}\nwebhook_verify_token = $secret{verify_file}\n"
  . "store_2.access_token = $secret{sender_file}\n";
close($fh);
chmod(0644, $file);
$node->append_conf('postgresql.conf', "wa_notify.secrets_file = '$file'\n");
$node->reload;
ok($node->poll_query_until('postgres', q{SELECT wa_notify._secrets_source() LIKE 'file (refused:%'}),
	'a file that others can read is refused');
like(slurp_file($node->logfile), qr/wa_notify\.secrets_file "\Q$file\E" is refused: group or others have access to it \(mode 0644\)/,
	'with a log line saying why');
chmod(0600, $file);
is($node->safe_psql('postgres', 'SELECT wa_notify._secrets_source()'), 'file', 'mode 0600: the file is used');

my ($ret, $o, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT wa_notify.configure(access_token => '$secret{token_refused}')");
like($err, qr/ERROR:  55000: access_token cannot be set with configure\(\) while wa_notify.secrets_file is set/,
	'configure() refuses a secret while the file is set');
like($err, qr/HINT:  Put the line "access_token = \.\.\." into "\Q$file\E"/, 'the hint names the file');
($ret, $o, $err) = $node->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT wa_notify.configure_sender('store_2', access_token => '$secret{sender_refused}')");
like($err, qr/ERROR:  55000: access_token cannot be set with configure_sender\(\) while wa_notify.secrets_file is set/,
	'configure_sender() refuses a secret while the file is set');
like($err, qr/HINT:  Put the line "store_2\.access_token = \.\.\." into "\Q$file\E"/,
	"the hint names the sender's line of the file");
is($node->safe_psql('postgres', q{SELECT access_token_set, app_secret_set FROM wa_notify.senders
                                   WHERE sender = 'store_2'}), 't|f',
	"store_2's token comes from the file now (its app secret line is not there)");

# everything a client sends is logged now
$node->append_conf('postgresql.conf', "log_statement = all\nlog_min_error_statement = debug5\n");
$node->reload;
$node->poll_query_until('postgres', q{SELECT current_setting('log_statement') = 'all'});

$mock->control({ token => $secret{token_file} });
my $id = WaMock::enqueue($node, 'order_placed', 'file-1', '5511987650001');
WaMock::wait_status($node, $id, 'sent');
my ($post) = grep { ($_->{json}{to} // '') eq '5511987650001' } @{ $mock->posts };
is($post->{headers}{authorization}, "Bearer $secret{token_file}", 'the worker sends with the file\'s token');
$mock->control({ token => undef });
my $id2 = WaMock::enqueue($node, 'order_placed', 'file-2', '5511987650002', undef, 'store_2');
WaMock::wait_status($node, $id2, 'sent');
($post) = grep { ($_->{json}{to} // '') eq '5511987650002' } @{ $mock->posts };
is($post->{headers}{authorization}, "Bearer $secret{sender_file}", "store_2 sends with its line of the file");

($code, $body) = $relay->handshake($secret{verify_file}, '42');
is("$code $body", '200 42', 'the relay handshake checks the file\'s verify token');
($code) = $relay->handshake($secret{verify_good}, '43');
is($code, '403', 'the configured one no longer opens it');
my $wamid = $node->safe_psql('postgres', "SELECT wamid FROM wa_notify.message WHERE id = $id");
my $status = qq({"object":"whatsapp_business_account","entry":[{"id":"$WaMock::WABA","changes":[{"value":)
  . qq({"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"$WaMock::PNID"},)
  . qq("statuses":[{"id":"$wamid","status":"delivered","timestamp":"1750030073","recipient_id":"5511987650001"}]},)
  . qq("field":"messages"}]}]});
($code) = $relay->post_signed($status, $secret{secret_file});
is($code, '200', 'a POST signed with the file\'s app secret is applied');
is($node->safe_psql('postgres', "SELECT status FROM wa_notify.message WHERE id = $id"), 'delivered',
	'the status changed the message');
($code) = $relay->post_signed($status, $secret{secret_good});
is($code, '403', 'a POST signed with the configured app secret is refused');

# a failing statement, logged with everything under these settings
$node->psql('postgres', "SELECT wa_notify.configure(polling_interval => 1)");
$log = slurp_file($node->logfile);
like($log, qr/LOG:  statement: SELECT wa_notify\.configure\(polling_interval => 1\)/,
	'log_statement = all logs what clients send');
like($log, qr/execute <unnamed>: SELECT wa_notify\.webhook_verify/, 'and the relay\'s statements');
my @file_hits = grep { /_file$/ && index($log, $secret{$_}) >= 0 } sort keys %secret;
is(join(', ', @file_hits), '', 'no secret of the file in the log under log_statement = all, log_min_error_statement = debug5');
unlike($log, qr/\Q$secret{token_refused}\E/, 'nor the refused one (it was sent before log_statement = all)');

$relay->stop;
$node->stop;
unlike(slurp_file($node->logfile), qr/terminated by signal/, 'no process crashed');
is(log_hits(), '', 'no secret anywhere in the whole server log');
done_testing();

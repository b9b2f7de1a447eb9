# The dispatcher sends queued messages to the Graph API: exact request
# (path, headers, JSON body) for template and text messages, wamid and
# wa_id stored; skips, invalid phones, holds, expiry, master switch,
# per-batch cap, pacing, connection check and template sync.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaMock;

my $mock = WaMock->new;
my $node = WaMock::setup_node('send', $mock);
my $T = $WaMock::TOKEN;
my $P = $WaMock::PNID;

sub sql { $node->safe_psql('postgres', $_[0]) }

# --- a template message: exact request ---------------------------------
$mock->control({ rules => { '5511987654321' => { wa_id => '551187654321' } } });
my $id = WaMock::enqueue($node, 'order_placed', 'A1', '5511987654321',
	{ customer_name => 'Ana "Bia"', order_number => 'A1', total => '1.234,50' });
WaMock::wait_status($node, $id, 'sent');
my $p = $mock->posts;
is(scalar @$p, 1, 'one POST');
is($p->[0]{path}, "/v23.0/$P/messages", 'POST path {base}/{version}/{phone_number_id}/messages');
is($p->[0]{headers}{authorization}, "Bearer $T", 'bearer token header');
is($p->[0]{headers}{'content-type'}, 'application/json', 'JSON content type');
is_deeply($p->[0]{json}, {
	messaging_product => 'whatsapp', recipient_type => 'individual', to => '5511987654321',
	type => 'template',
	template => { name => 'order_confirmation', language => { code => 'pt_BR' },
		components => [ { type => 'body', parameters => [
			{ type => 'text', text => 'Ana "Bia"' }, { type => 'text', text => 'A1' },
			{ type => 'text', text => '1.234,50' } ] } ] },
	biz_opaque_callback_data => sql("SELECT wa_notify._callback_data($id)") }, 'template body as rendered');
is(sql("SELECT status, wamid ~ '^wamid\\.MOCK', wa_id, attempts, http_status, error_code IS NULL, "
	. "sent_at IS NOT NULL, claimed_at IS NOT NULL FROM wa_notify.message WHERE id = $id"),
	'sent|t|551187654321|1|200|t|t|t', 'sent: wamid, wa_id, attempts, http status recorded');
is(sql("SELECT wamid FROM wa_notify.message WHERE id = $id"),
	'wamid.MOCK' . sprintf('%08d', 1), 'wamid is messages[0].id');


# the worker shows what it does, in pg_stat_activity and in state
ok($node->poll_query_until('postgres',
	"SELECT query = 'idle' FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'"),
	'pg_stat_activity shows the worker idle');
is(sql("SELECT worker_activity, worker_pid > 0 FROM wa_notify.state"), 'idle|t', 'state.worker_activity');

# --- a text message (templates off) --------------------------------------
WaMock::configure($node, use_templates => 'false');
$id = WaMock::enqueue($node, 'order_cancelled', 'A2', '5511987650002');
WaMock::wait_status($node, $id, 'sent');
$p = $mock->posts_to('5511987650002');
is(scalar @$p, 1, 'one text POST');
my $want = decode_json(sql("SELECT wa_notify._render(event, phone, params, id) FROM wa_notify.message WHERE id = $id"));
is_deeply($p->[0]{json}, $want, 'text body is exactly _render()');
is($p->[0]{json}{type}, 'text', 'type text');
like($p->[0]{json}{biz_opaque_callback_data}, qr/^$id\.[0-9a-f]{32}\z/,
	'biz_opaque_callback_data is the message id and its MAC');
WaMock::configure($node, use_templates => 'true');

# --- hand-inserted rows: national phone normalised, invalid phone fails,
#     disabled event and blacklisted phone skipped ---------------------------
my $nat = WaMock::enqueue($node, 'order_placed', 'N1', '(11) 98765-1111');
my $bad = WaMock::enqueue($node, 'order_placed', 'N2', '12ab');
sql("SELECT wa_notify._blacklist('5511911112222', 'test', 'manual', NULL)");
my $blk = WaMock::enqueue($node, 'order_placed', 'N3', '+55 11 91111-2222');
sql("UPDATE wa_notify.event SET enabled = false WHERE event = 'refund_issued'");
my $dis = WaMock::enqueue($node, 'refund_issued', 'N4', '5511987650004');
WaMock::wait_status($node, $_, 'sent', 'failed', 'skipped') for ($nat, $bad, $blk, $dis);
is(sql("SELECT status, phone FROM wa_notify.message WHERE id = $nat"), 'sent|5511987651111',
	'national number normalised and sent');
is(sql("SELECT status, error_message FROM wa_notify.message WHERE id = $bad"),
	q{failed|invalid phone number '12ab': expected E.164 digits or a national number},
	'invalid phone: failed with a clear error');
is(sql("SELECT status, error_message FROM wa_notify.message WHERE id = $blk"),
	'skipped|phone 5511911112222 is blacklisted (manual: test)', 'blacklisted phone skipped (wa_notify._skip_reason)');
is(sql("SELECT status, error_message FROM wa_notify.message WHERE id = $dis"),
	'skipped|event refund_issued is disabled', 'disabled event skipped');
is(scalar @{ $mock->posts_to('5511911112222') } + scalar @{ $mock->posts_to('5511987650004') },
	0, 'nothing posted for skipped messages');

# --- lookback: an old message expires unsent -------------------------------
my $old = $node->safe_psql('postgres', "INSERT INTO wa_notify.message (event, order_key, phone, params, created_at) "
	. "VALUES ('order_placed', 'OLD', '5511987650005', '{}', now() - interval '4 days') RETURNING id");
WaMock::wait_status($node, $old, 'expired');
is(sql("SELECT error_message FROM wa_notify.message WHERE id = $old"),
	'not sent within lookback_days (3)', 'expired with the reason');
is(scalar @{ $mock->posts_to('5511987650005') }, 0, 'expired message never posted');

# --- master switch off: nothing is sent -----------------------------------
WaMock::configure($node, enabled => 'false');
my $off = WaMock::enqueue($node, 'order_placed', 'OFF', '5511987650006');
ok($node->poll_query_until('postgres',
	"SELECT query = 'paused: master switch off (enabled = false)' FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'"),
	'worker reports the master switch');
sql("SELECT wa_notify.wake()");
ok($node->poll_query_until('postgres',
	"SELECT worker_activity = 'paused: master switch off (enabled = false)' FROM wa_notify.state"),
	'state reports the master switch');
is(sql("SELECT status FROM wa_notify.message WHERE id = $off"), 'queued', 'still queued while off');
is(scalar @{ $mock->posts_to('5511987650006') }, 0, 'nothing posted while off');
WaMock::configure($node, enabled => 'true');
WaMock::wait_status($node, $off, 'sent');

# --- template known not approved: held until approved ----------------------
sql("UPDATE wa_notify.event SET template_status = 'PENDING' WHERE event = 'order_processing'");
my $held = WaMock::enqueue($node, 'order_processing', 'H1', '5511987650007');
ok($node->poll_query_until('postgres',
	"SELECT held_reason = 'template order_processing is PENDING' FROM wa_notify.message WHERE id = $held"),
	'message held with the reason');
is(sql("SELECT status FROM wa_notify.message WHERE id = $held"), 'queued', 'held message stays queued');
my @tpl = map { { name => "filler_$_", language => 'en_US', status => 'APPROVED', id => "$_" } } 1 .. 120;
push @tpl, { name => 'order_processing', language => 'pt_BR', status => 'APPROVED', id => '900' },
	{ name => 'order_confirmation', language => 'pt_BR', status => 'APPROVED', id => '901' },
	{ name => 'shipment_tracking', language => 'en_US', status => 'REJECTED', id => '902' };
$mock->control({ templates => \@tpl });
is(sql("SELECT * FROM wa_notify.sync_templates()"), '123|2|4',
	'sync_templates: 123 templates over two pages, 2 events updated, 4 without a template');
is(sql("SELECT string_agg(event || '=' || template_status, ',' ORDER BY event) FROM wa_notify.event"),
	'order_cancelled=unknown,order_placed=APPROVED,order_processing=APPROVED,refund_issued=unknown,'
	. 'shipment_created=unknown,shipment_delivered=unknown', 'template statuses recorded');
my @tget = grep { $_->{path} eq "/v23.0/$WaMock::WABA/message_templates" } @{ $mock->requests };
is(scalar @tget, 2, 'two template pages fetched');
like($tget[1]{query}, qr/after=100/, 'second page by cursor');
WaMock::wait_status($node, $held, 'sent');
is(sql("SELECT held_reason IS NULL FROM wa_notify.message WHERE id = $held"), 't', 'hold lifted');

# --- connection check ------------------------------------------------------
is(sql("SELECT * FROM wa_notify.check_connection()"),
	'connected|+55 11 4000-0000|Loja Teste|GREEN|TIER_2K|STANDARD|', 'check_connection() result');
is(sql("SELECT api_status, last_check_error IS NULL, display_phone_number, verified_name, quality_rating, "
	. "messaging_limit, throughput_level FROM wa_notify.state"),
	'connected|t|+55 11 4000-0000|Loja Teste|GREEN|TIER_2K|STANDARD', 'state records the check');
my @get = grep { $_->{method} eq 'GET' && $_->{path} eq "/v23.0/$P" } @{ $mock->requests };
ok(@get >= 2, 'worker and check_connection() both GET the phone number');
is($get[-1]{headers}{authorization}, "Bearer $T", 'GET carries the bearer token');
$mock->control({ rules => { GET => { code => 190, http => 401 } } });
is(sql("SELECT api_status, error FROM wa_notify.check_connection()"),
	'disconnected|HTTP 401: Graph error 190: (#190) mock error 190: mock details for 190',
	'failed check: disconnected with the Graph error');

# --- per-batch cap: at most max_per_batch per polling interval ------------
my $before = sql("SELECT count(*) FROM wa_notify.message WHERE claimed_at > now() - interval '300 s'");
WaMock::configure($node, max_per_batch => $before + 3, polling_interval => 300);
my @cap = map { WaMock::enqueue($node, 'order_placed', "CAP$_", sprintf('55119876510%02d', $_)) } 1 .. 5;
ok($node->poll_query_until('postgres',
	"SELECT worker_activity LIKE 'batch cap reached (" . ($before + 3) . "/" . ($before + 3) . ")%' FROM wa_notify.state"),
	'worker waits for the next batch');
is(sql("SELECT count(*) FILTER (WHERE status = 'sent') || '/' || count(*) FILTER (WHERE status = 'queued') "
	. "FROM wa_notify.message WHERE order_key LIKE 'CAP%'"), '3/2', 'three sent, two wait');
is(scalar(grep { $_->{json}{to} =~ /^55119876510/ } @{ $mock->posts }), 3, 'three POSTs');
is(sql("SELECT next_dispatch_at BETWEEN now() + interval '250 s' AND now() + interval '301 s' FROM wa_notify.state"),
	't', 'next_dispatch_at is when the window frees');
WaMock::configure($node, max_per_batch => 100000);
WaMock::wait_status($node, $_, 'sent') for @cap;

# --- pacing: random delay in [min, max] between requests -----------------
WaMock::configure($node, min_delay => 0.2, max_delay => 0.4);
my $n0 = scalar @{ $mock->posts };
my @pace = map { WaMock::enqueue($node, 'order_placed', "PACE$_", sprintf('55119876520%02d', $_)) } 1 .. 6;
WaMock::wait_status($node, $_, 'sent') for @pace;
my @t = map { $_->{t} } grep { $_->{json}{to} =~ /^55119876520/ } @{ $mock->posts };
is(scalar @t, 6, 'six paced POSTs');
my @gaps = map { $t[$_] - $t[ $_ - 1 ] } 1 .. $#t;
# the pacer's promise is the lower bound: a busy machine may stretch a gap
# past max_delay, so an upper bound here would be a timing threshold
my @out = grep { $_ < 0.2 } @gaps;
is(scalar @out, 0, 'no gap between requests is shorter than min_delay (0.2 s)')
  or diag("gaps: @gaps");
WaMock::configure($node, min_delay => 0, max_delay => 0);

# the token never reaches the server log
my $log = slurp_file($node->logfile);
unlike($log, qr/\Q$T\E/, 'the access token is in no log line');

$node->stop;
done_testing();

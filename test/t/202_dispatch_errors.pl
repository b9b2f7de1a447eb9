# Every Graph error class has its effect on the message, the blacklist, the
# event and the worker's pause state (doc/design.md, "Dispatch and Graph errors").
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaMock;

my $mock = WaMock->new;
my $node = WaMock::setup_node('errors', $mock);
sub sql { $node->safe_psql('postgres', $_[0]) }
my $seq = 0;

# queue one message to a fresh phone whose next answer is $rule
sub send_with
{
	my ($rule, $event) = @_;
	my $phone = sprintf('5511987%06d', ++$seq);
	$mock->control({ rules => { $phone => { count => 1, %$rule } } });
	my $id = WaMock::enqueue($node, $event // 'order_placed', "E$seq", $phone);
	return ($id, $phone);
}

sub row
{
	my ($id, $cols) = @_;
	return sql("SELECT $cols FROM wa_notify.message WHERE id = $id");
}

# --- recipient unreachable: failed + blacklisted ---------------------------
for my $c ([131026, 'auto', 'message undeliverable'], [131021, 'auto', 'recipient cannot be the sender'],
	[130403, 'auto', 'this business blocked the user'],
	[131050, 'opt_out', 'user stopped marketing messages from this business'])
{
	my ($code, $src, $title) = @$c;
	my ($id, $phone) = send_with({ code => $code, message => "(#$code) Title", details => "Details $code." });
	WaMock::wait_status($node, $id, 'failed');
	is(row($id, 'http_status, error_code, error_class, error_message, attempts, failed_at IS NOT NULL'),
		"400|$code|recipient|Graph error $code: (#$code) Title: Details $code.|1|t", "$code: message failed");
	is(sql("SELECT source, error_code, reason FROM wa_notify.blocked WHERE phone_key = wa_notify.phone_key('$phone')"),
		"$src|$code|$title", "$code: number blacklisted ($src)");
}

# --- this message only: failed with a hint, nothing else --------------------
for my $c ([131047, 400], [470, 400], [131030, 400], [131009, 400], [100, 400], [131051, 400],
	[135000, 400], [130497, 403])
{
	my ($code, $http) = @$c;
	my ($id, $phone) = send_with({ code => $code, http => $http, message => "(#$code) T",
		details => ($code == 100 ? 'Invalid parameter: to' : "D$code") });
	WaMock::wait_status($node, $id, 'failed');
	my $hint = sql("SELECT hint FROM wa_notify.graph_errors WHERE code = $code");
	is(row($id, 'http_status, error_code, error_class, error_message'),
		"$http|$code|message|Graph error $code: (#$code) T: " . ($code == 100 ? 'Invalid parameter: to' : "D$code")
		  . " Hint: $hint", "$code: failed with the hint");
	is(sql("SELECT count(*) FROM wa_notify.blocked WHERE phone_key = wa_notify.phone_key('$phone')"), '0',
		"$code: not blacklisted");
}
is(sql("SELECT paused_reason IS NULL FROM wa_notify.state"), 't', 'message errors pause nothing');

# --- event's template broken: event held, other events go on ---------------
for my $c (['order_processing', 132001, 'unknown'], ['shipment_delivered', 132015, 'PAUSED'],
	['order_cancelled', 132016, 'DISABLED'], ['shipment_created', 132000, 'unknown'],
	['refund_issued', 132012, 'unknown'])
{
	my ($ev, $code, $st) = @$c;
	my ($id) = send_with({ code => $code }, $ev);
	ok($node->poll_query_until('postgres', "SELECT held_code = $code FROM wa_notify.event WHERE event = '$ev'"),
		"$code: event $ev held");
	ok($node->poll_query_until('postgres', "SELECT status = 'queued' AND held_reason IS NOT NULL "
		. "FROM wa_notify.message WHERE id = $id"), "$code: its message is back in the queue, held");
	is(sql("SELECT template_status, held_reason LIKE 'template %: % ($code)%' FROM wa_notify.event WHERE event = '$ev'"),
		"$st|t", "$code: template status $st, reason names the code");
	is(row($id, 'error_code, error_class'), "$code|template", "$code: outcome recorded");
}
my ($other) = send_with({}, 'order_placed');
WaMock::wait_status($node, $other, 'sent');
# a second message of a held event waits without a request
my $n = scalar @{ $mock->posts };
my ($h2) = send_with({}, 'order_processing');
ok($node->poll_query_until('postgres', "SELECT held_reason IS NOT NULL FROM wa_notify.message WHERE id = $h2"),
	'later message of a held event is held');
my ($after) = send_with({}, 'order_placed');
WaMock::wait_status($node, $after, 'sent');
is(scalar @{ $mock->posts }, $n + 1, 'held message was not posted, the other event was');
# lifting the hold (template fixed): the held messages go
sql("UPDATE wa_notify.event SET held_reason = NULL, held_code = NULL, held_at = NULL WHERE event = 'order_processing'");
WaMock::wait_status($node, $h2, 'sent');

# --- account or credentials: dispatch pauses; resumes on a settings change
#     or a successful connection check -------------------------------------
my $i = 0;
for my $c ([190, 401], [10, 403], [200, 403], [131031, 403], [368, 403], [0, 401])
{
	my ($code, $http) = @$c;
	my ($id) = send_with({ code => $code, http => $http });
	ok($node->poll_query_until('postgres', "SELECT paused_code = $code FROM wa_notify.state"), "$code: paused");
	ok($node->poll_query_until('postgres', "SELECT status = 'queued' FROM wa_notify.message WHERE id = $id"),
		"$code: message back in the queue");
	my $title = sql("SELECT coalesce((SELECT title FROM wa_notify.graph_errors WHERE code = $code), 'permission error')");
	ok($node->poll_query_until('postgres',
		"SELECT query LIKE 'paused: $title ($code)%' FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'"),
		"$code: pg_stat_activity names the cause");
	my $nposts = scalar @{ $mock->posts };
	my ($waiting) = send_with({});
	sql("SELECT wa_notify.wake()");
	is(row($waiting, 'status'), 'queued', "$code: nothing is sent while paused");
	if ($i++ % 2)
	{
		is(sql("SELECT api_status FROM wa_notify.check_connection()"), 'connected', "$code: connection check succeeds");
	}
	else
	{
		WaMock::configure($node, max_rate => 0);    # any settings change
	}
	WaMock::wait_status($node, $_, 'sent') for ($id, $waiting);
	is(sql("SELECT paused_reason IS NULL FROM wa_notify.state"), 't', "$code: pause lifted");
	is(scalar @{ $mock->posts }, $nposts + 2, "$code: both sent after the pause");
}

# --- throttled: retried later, own rate halved -----------------------------
{
	my ($id) = send_with({ code => 130429, http => 429 });
	ok($node->poll_query_until('postgres', "SELECT error_code = 130429 FROM wa_notify.message WHERE id = $id"),
		'130429 recorded');
	is(row($id, "status, error_class, next_attempt_at > now(), attempts"), 'queued|throttled|t|1', '130429: retried later');
	is(sql("SELECT rate_factor FROM wa_notify.state"), '0.5', '130429: rate factor halved');
	sql("UPDATE wa_notify.message SET next_attempt_at = now() WHERE id = $id");
	sql("SELECT wa_notify.wake()");
	WaMock::wait_status($node, $id, 'sent');
	ok(sql("SELECT rate_factor FROM wa_notify.state") > 0.5, 'rate factor recovers after a success');
	sql("UPDATE wa_notify.state SET rate_factor = 1");
}
{
	my ($id) = send_with({ code => 131048 });
	ok($node->poll_query_until('postgres', "SELECT error_code = 131048 FROM wa_notify.message WHERE id = $id"),
		'131048 recorded');
	is(row($id, 'status, error_class'), 'queued|throttled', '131048: retried later');
	is(sql("SELECT pause_until BETWEEN now() + interval '800 s' AND now() + interval '901 s' FROM wa_notify.state"),
		't', '131048: all sending pauses for a cool-down');
	ok($node->poll_query_until('postgres',
		"SELECT worker_activity LIKE 'paused until %: spam rate limit cool-down (131048)' FROM wa_notify.state"),
		'131048: the worker says why it waits');
	sql("UPDATE wa_notify.state SET pause_until = NULL, rate_factor = 1");
	sql("UPDATE wa_notify.message SET next_attempt_at = now() WHERE id = $id");
	sql("SELECT wa_notify.wake()");
	WaMock::wait_status($node, $id, 'sent');
}

# --- pair rate limit: that recipient waits 4^n s, others go on -------------
{
	my ($id, $phone) = send_with({ code => 131056 });
	ok($node->poll_query_until('postgres', "SELECT error_code = 131056 FROM wa_notify.message WHERE id = $id"),
		'131056 recorded');
	is(row($id, "status, error_class, next_attempt_at BETWEEN now() + interval '2 s' AND now() + interval '4.1 s'"),
		'queued|pair_rate|t', '131056: waits 4^1 s');
	my $same = WaMock::enqueue($node, 'order_processing', "SAME$seq", $phone);
	my ($other2) = send_with({});
	WaMock::wait_status($node, $other2, 'sent');
	WaMock::wait_status($node, $id, 'sent');
	WaMock::wait_status($node, $same, 'sent');
	my @to = @{ $mock->posts_to($phone) };
	is(scalar @to, 3, 'recipient got the retry and its second message');
	ok($to[1]{t} - $to[0]{t} >= 3.9, 'the recipient\'s next request came after the pair-rate wait');
	is(sql("SELECT sent_at > (SELECT sent_at FROM wa_notify.message WHERE id = $other2) FROM wa_notify.message WHERE id = $same"),
		't', 'another recipient went first');
}

# --- transient: retried with backoff, then failed ---------------------------
for my $c ([{ code => 131000, http => 500 }, 'Graph error 131000: (#131000) mock error 131000: mock details for 131000'],
	[{ code => 1, http => 500 }, 'Graph error 1: (#1) mock error 1: mock details for 1'],
	[{ code => 2, http => 503 }, 'Graph error 2: (#2) mock error 2: mock details for 2'],
	[{ code => 133004, http => 503 }, 'Graph error 133004: (#133004) mock error 133004: mock details for 133004'],
	[{ http => 502 }, 'HTTP 502: the answer is not JSON'],
	[{ garbage => 1 }, 'HTTP 200: the answer is not JSON'],
	[{ timeout => 1 }, 'request failed: Timeout was reached: Operation timed out after 2000 milliseconds with 0 bytes received'])
{
	my ($rule, $err) = @$c;
	my ($id) = send_with($rule);
	my $what = join(',', %$rule);
	ok($node->poll_query_until('postgres', "SELECT error_class = 'transient' FROM wa_notify.message WHERE id = $id"),
		"$what: transient") or next;
	is(row($id, "status, attempts, next_attempt_at BETWEEN now() AND now() + interval '8 s', error_message"),
		"queued|1|t|$err", "$what: queued for a retry with backoff");
	sql("UPDATE wa_notify.message SET next_attempt_at = now() WHERE id = $id");
	sql("SELECT wa_notify.wake()");
	WaMock::wait_status($node, $id, 'sent');
}
{
	# connection refused
	WaMock::configure($node, api_base_url => 'http://127.0.0.1:1');
	my ($id) = send_with({});
	ok($node->poll_query_until('postgres', "SELECT error_class = 'transient' FROM wa_notify.message WHERE id = $id"),
		'connection refused: transient');
	like(row($id, 'error_message'), qr/^request failed: Couldn't connect to server/, 'connection refused: error recorded');
	is(sql("SELECT api_status FROM wa_notify.state"), 'disconnected', 'connection check says disconnected');
	# bounded attempts: the last one fails the message
	sql("UPDATE wa_notify.message SET attempts = 5, next_attempt_at = now() WHERE id = $id");
	sql("SELECT wa_notify.wake()");
	WaMock::wait_status($node, $id, 'failed');
	like(row($id, 'attempts, error_message'), qr/^6\|request failed: .* \(gave up after 6 attempts\)$/,
		'failed after 6 attempts');
	WaMock::configure($node, api_base_url => $mock->base_url);
}

# --- a webhook status that raced ahead is never moved backwards -------------
{
	my ($id, $phone) = send_with({ delay => 1 });
	ok($node->poll_query_until('postgres', "SELECT status = 'sending' FROM wa_notify.message WHERE id = $id"),
		'message in flight');
	sql("UPDATE wa_notify.message SET status = 'delivered', delivered_at = now() WHERE id = $id");
	ok($node->poll_query_until('postgres', "SELECT wamid IS NOT NULL FROM wa_notify.message WHERE id = $id"),
		'answer recorded');
	is(row($id, 'status'), 'delivered', 'delivered kept when the POST answer arrives later');
}

is(sql("SELECT count(*) FROM wa_notify.message WHERE status = 'sending'"), '0', 'nothing left sending');
$node->stop;
done_testing();

# A Graph error does the same whether the answer to a send reports it (the
# worker, wa_notify._record) or a "failed" status webhook does
# (wa_notify.webhook_receive): one function, wa_notify._apply_error(), reads
# the effects from the one error table.  Only the message's own fate
# differs: after a send it follows graph_errors.on_send (a template error
# puts it back in the queue, held), a failed status has already failed it.
#
# Codes and meanings as on Meta's "WhatsApp error codes" page (WhatsApp
# Business Platform, developers.facebook.com/documentation/business-messaging/
# whatsapp/support/error-codes, "Cloud API errors are returned either
# synchronously as a Graph API response, asynchronously via Webhook, or
# sometimes through both methods"): 132016 template disabled for low
# quality, 131026 message undeliverable, 131050 user stopped marketing
# messages, 131048 spam rate limit hit, 190 access token expired.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaMock;

my $mock = WaMock->new;
my $node = WaMock::setup_node('effects', $mock, app_secret => $WaMock::APP_SECRET);
my $seq = 0;

# a message the worker sends, whose answer is Graph error $code
sub by_send
{
	my ($code, $event) = @_;
	my $phone = sprintf('5511977%06d', ++$seq);
	$mock->control({ rules => { $phone => { count => 1, code => $code, message => "(#$code) Title $code",
		details => "Details $code." } } });
	my $id = WaMock::enqueue($node, $event, "S$seq", $phone);
	ok($node->poll_query_until('postgres', "SELECT error_code = $code FROM wa_notify.message WHERE id = $id"),
		"$code by send: recorded");
	return ($id, $phone);
}

# a message already sent, for which a webhook reports Graph error $code
sub by_webhook
{
	my ($code, $event) = @_;
	my $phone = sprintf('5511966%06d', ++$seq);
	my $id = WaNode::sql($node, "INSERT INTO wa_notify.message (event, order_key, phone, status, wamid, sent_at, attempts) "
		. "VALUES ('$event', 'W$seq', '$phone', 'sent', 'wamid.W$seq', now(), 1) RETURNING id");
	is(WaMock::webhook_failed($node, "wamid.W$seq", $phone, $code) =~ /"applied": 1/ ? 1 : 0, 1,
		"$code by webhook: applied");
	return ($id, $phone);
}

# a queued message of $event that is not due yet: does the error hold it?
sub waiting
{
	my ($event) = @_;
	$seq++;
	return WaNode::sql($node, "INSERT INTO wa_notify.message (event, order_key, phone, next_attempt_at) "
		. "VALUES ('$event', 'Q$seq', '5511955" . sprintf('%06d', $seq) . "', now() + interval '1 hour') RETURNING id");
}

# --- template disabled (132016): same event state, same messages held -----
{
	my $q_send = waiting('order_cancelled');
	my $q_hook = waiting('refund_issued');
	is(WaNode::sql($node, "SELECT count(*) FROM wa_notify.message WHERE id IN ($q_send, $q_hook) AND held_reason IS NULL"), '2',
		'132016: the waiting messages are not held before');
	my ($s) = by_send(132016, 'order_cancelled');
	ok($node->poll_query_until('postgres', "SELECT status = 'queued' FROM wa_notify.message WHERE id = $s"),
		'132016 by send: its message is back in the queue');
	my ($w) = by_webhook(132016, 'refund_issued');

	my $expected = "format('template %s: %s (%s) %s', e.template_name, g.title, g.code, g.hint)";
	is(WaNode::sql($node, "SELECT string_agg(e.event || '|' || e.template_status || '|' || e.held_code || '|' "
			. "|| (e.held_reason = $expected) || '|' || (e.template_status_at IS NOT NULL), ',' ORDER BY e.event) "
			. "FROM wa_notify.event e, wa_notify.graph_errors g "
			. "WHERE g.code = 132016 AND e.event IN ('order_cancelled', 'refund_issued')"),
		'order_cancelled|DISABLED|132016|true|true,refund_issued|DISABLED|132016|true|true',
		'132016: both ways the event is DISABLED and held with the same reason');
	is(WaNode::sql($node, "SELECT string_agg(m.id || ':' || m.status || ':' || (m.held_reason = e.held_reason), ',' ORDER BY m.id) "
			. "FROM wa_notify.message m JOIN wa_notify.event e USING (event) WHERE m.id IN ($q_send, $q_hook, $s)"),
		"$q_send:queued:true,$q_hook:queued:true,$s:queued:true",
		'132016: both ways the event\'s queued messages are held (and the sent one, requeued)');
	is(WaNode::sql($node, "SELECT string_agg(id || ':' || status || ':' || error_class || ':' || error_code, ',' ORDER BY id) "
			. "FROM wa_notify.message WHERE id IN ($s, $w)"),
		"$s:queued:template:132016,$w:failed:template:132016",
		'132016: the same class and code recorded; a failed status failed its message');
	WaNode::sql($node, "UPDATE wa_notify.event SET held_reason = NULL, held_code = NULL, held_at = NULL, template_status = 'unknown' "
		. "WHERE event IN ('order_cancelled', 'refund_issued')");
}

# --- recipient unreachable: the same blacklist row both ways ---------------
for my $c ([131026, 'auto'], [131050, 'opt_out'])
{
	my ($code, $source) = @$c;
	my (undef, $p_send) = by_send($code, 'order_placed');
	my (undef, $p_hook) = by_webhook($code, 'order_placed');
	is(WaNode::sql($node, "SELECT string_agg(b.reason || '|' || b.source || '|' || b.error_code || '|' || (b.reason = g.title), ',') "
			. "FROM wa_notify.blocked b, wa_notify.graph_errors g WHERE g.code = $code "
			. "AND b.phone_key IN (wa_notify.phone_key('$p_send'), wa_notify.phone_key('$p_hook'))"),
		join(',', ((WaNode::sql($node, "SELECT title FROM wa_notify.graph_errors WHERE code = $code") . "|$source|$code|true") x 2)),
		"$code: blacklisted both ways with the same reason and source ($source)");
}

# --- 131048: the same cool-down both ways -----------------------------------
{
	my ($s) = by_send(131048, 'order_placed');
	is(WaNode::sql($node, "SELECT s.pause_until = m.updated_at + make_interval(secs => g.cooldown_secs) "
			. "FROM wa_notify.state s, wa_notify.message m, wa_notify.graph_errors g WHERE m.id = $s AND g.code = 131048"),
		't', '131048 by send: sending pauses for graph_errors.cooldown_secs');
	WaNode::sql($node, "UPDATE wa_notify.state SET pause_until = NULL, rate_factor = 1");
	my ($w) = by_webhook(131048, 'order_placed');
	is(WaNode::sql($node, "SELECT s.pause_until = m.updated_at + make_interval(secs => g.cooldown_secs) "
			. "FROM wa_notify.state s, wa_notify.message m, wa_notify.graph_errors g WHERE m.id = $w AND g.code = 131048"),
		't', '131048 by webhook: the same cool-down');
	WaNode::sql($node, "UPDATE wa_notify.state SET pause_until = NULL");
}

# --- account (190): the same pause both ways --------------------------------
{
	by_send(190, 'order_placed');
	ok($node->poll_query_until('postgres', "SELECT paused_code = 190 FROM wa_notify.state"), '190 by send: paused');
	my $by_send = WaNode::sql($node, "SELECT paused_reason FROM wa_notify.state");
	WaNode::sql($node, "UPDATE wa_notify.state SET paused_reason = NULL, paused_code = NULL, paused_at = NULL");
	by_webhook(190, 'order_placed');
	is(WaNode::sql($node, "SELECT paused_reason || '|' || paused_code FROM wa_notify.state"), "$by_send|190",
		'190 by webhook: the same pause reason');
	is($by_send, WaNode::sql($node, "SELECT format('%s (%s) %s', title, code, hint) FROM wa_notify.graph_errors WHERE code = 190"),
		'190: the reason is the table\'s title, code and hint');
}

$node->stop;
done_testing();

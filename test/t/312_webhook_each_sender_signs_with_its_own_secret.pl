# Webhooks per sender (issue 12, SPEC section 8): each change of a webhook
# is routed by its value.metadata.phone_number_id to the sender with that
# number, and the X-Hub-Signature-256 must be made with that sender's app
# secret (its own, else the global one):
#  - two senders with different app secrets, each sent a webhook signed with
#    its own secret: applied; signed with the other's: 403 (the relay's answer to a bad signature, 28000), nothing applied;
#  - a phone_number_id that is no sender's: ignored, state.webhook_unknown_numbers
#    + 1 (shown on the status card), not an error;
#  - a status for sender A's message arriving in sender B's metadata matches
#    nothing (counted as an unknown status), even signed with B's secret;
#  - one body naming both numbers, signed with B's secret: B's change is
#    applied, A's refused (counted);
#  - an opt-out keyword sent to B's number records sender B on the block.
# The payload shape (entry[].changes[].value.metadata.phone_number_id, statuses[],
# messages[]) is Meta's "messages webhook reference":
# https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaNode;
use WaRelay;

my %secret = (global => 'global-app-secret-A', shop_b => 'shop-b-app-secret-B');
my ($pnid_a, $pnid_b, $pnid_x) = ('106540352242922', '207651463353033', '999999999999999');

# the secrets file: the global app secret (sender default) and shop_b's own
my $dir = PostgreSQL::Test::Utils::tempdir();
my $file = "$dir/wa_notify_secrets.conf";
open(my $fh, '>', $file) or die;
print $fh "app_secret = $secret{global}\nshop_b.app_secret = $secret{shop_b}\n";
close($fh);
chmod(0600, $file);

my $node = WaNode::preloaded('webhook_senders', conf => "wa_notify.secrets_file = '$file'\n");
$node->safe_psql('postgres', qq{
CREATE EXTENSION wa_notify;
SELECT wa_notify.configure(phone_number_id => '$pnid_a');
INSERT INTO wa_notify.sender (sender, phone_number_id) VALUES ('shop_b', '$pnid_b');
INSERT INTO wa_notify.message (id, event, order_key, phone, status, wamid, sent_at, sender) VALUES
    (1, 'order_placed', 'A1', '5511987650001', 'sent', 'wamid.A1', now(), 'default'),
    (2, 'order_placed', 'B1', '5511987650002', 'sent', 'wamid.B1', now(), 'shop_b');
});
is($node->safe_psql('postgres', "SELECT wa_notify._sender_for_phone_number_id('$pnid_b') || ' '"
	. " || wa_notify._sender_for_phone_number_id('$pnid_a')"), 'shop_b default', 'the numbers are the senders\'');
WaRelay::create_role($node);
my $relay = WaRelay->start($node);

sub change
{
	my ($pnid, $what) = @_;
	return qq({"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881",)
	  . qq("phone_number_id":"$pnid"},$what},"field":"messages"});
}

sub status
{
	my ($wamid, $st, $ts, $to) = @_;
	return qq("statuses":[{"id":"$wamid","status":"$st","timestamp":"$ts","recipient_id":"$to"}]);
}

sub body
{
	return qq({"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[)
	  . join(',', @_) . ']}]}';
}

sub statuses
{
	return $node->safe_psql('postgres',
		q{SELECT string_agg(id || ':' || status, ' ' ORDER BY id) FROM wa_notify.message});
}

# webhook_receive() in SQL, for its counts (the relay answers the HTTP code)
sub receive
{
	my ($body, $secret) = @_;
	my $sig = WaRelay::signature($body, $secret);
	return $node->safe_psql('postgres',
		"SELECT wa_notify.webhook_receive(convert_to(\$wh\$$body\$wh\$, 'UTF8'), '$sig')");
}

# --- each sender's webhook, signed with its own secret: applied -------------
my ($code) = $relay->post_signed(body(change($pnid_a, status('wamid.A1', 'delivered', 1700000100, '5511987650001'))),
	$secret{global});
is($code, '200', 'A\'s webhook signed with the global secret (A has none of its own): 200');
($code) = $relay->post_signed(body(change($pnid_b, status('wamid.B1', 'delivered', 1700000200, '5511987650002'))),
	$secret{shop_b});
is($code, '200', 'B\'s webhook signed with B\'s own secret: 200');
is(statuses(), '1:delivered 2:delivered', 'both applied');

# --- signed with the other sender's secret: refused, nothing applied ---------
($code) = $relay->post_signed(body(change($pnid_b, status('wamid.B1', 'read', 1700000300, '5511987650002'))),
	$secret{global});
is($code, '403', 'B\'s webhook signed with A\'s secret: 403 (bad signature)');
($code) = $relay->post_signed(body(change($pnid_a, status('wamid.A1', 'read', 1700000400, '5511987650001'))),
	$secret{shop_b});
is($code, '403', 'A\'s webhook signed with B\'s secret: 403 (bad signature)');
is(statuses(), '1:delivered 2:delivered', 'neither applied');

# --- a number that is no sender's: ignored and counted -----------------------
my $unknown_before = $node->safe_psql('postgres', 'SELECT webhook_unknown_numbers FROM wa_notify.state');
($code) = $relay->post_signed(body(change($pnid_x, status('wamid.A1', 'read', 1700000500, '5511987650001'))),
	$secret{global});
is($code, '200', 'a status for a number no sender has: 200 (not an error, Meta would retry)');
is(statuses(), '1:delivered 2:delivered', 'and not applied');
is($node->safe_psql('postgres', 'SELECT webhook_unknown_numbers FROM wa_notify.state'), $unknown_before + 1,
	'state.webhook_unknown_numbers + 1');
is($node->safe_psql('postgres', 'SELECT webhook_unknown_numbers FROM wa_notify.status'), $unknown_before + 1,
	'shown on the status card');

# --- A's message in B's metadata, signed with B's secret: matches nothing ----
my $unknown_statuses = $node->safe_psql('postgres', 'SELECT webhook_unknown_statuses FROM wa_notify.state');
like(receive(body(change($pnid_b, status('wamid.A1', 'read', 1700000600, '5511987650001'))), $secret{shop_b}),
	qr/"unknown": 1\b/, 'a status for A\'s message in B\'s metadata is an unknown status');
is(statuses(), '1:delivered 2:delivered', 'A\'s message is not moved by B');
is($node->safe_psql('postgres', 'SELECT webhook_unknown_statuses FROM wa_notify.state'), $unknown_statuses + 1,
	'counted with the unknown statuses');

# --- one body naming both numbers, signed with B's secret --------------------
my $mixed = receive(body(change($pnid_a, status('wamid.A1', 'read', 1700000700, '5511987650001')),
	change($pnid_b, status('wamid.B1', 'read', 1700000800, '5511987650002'))), $secret{shop_b});
like($mixed, qr/"refused": 1\b/, 'both numbers, B\'s signature: A\'s change is refused');
like($mixed, qr/"applied": 1\b/, 'and B\'s applied');
is(statuses(), '1:delivered 2:read', 'only B\'s message moved');

# --- an opt-out to B's number is B's -----------------------------------------
like(receive(body(change($pnid_b, qq("contacts":[{"profile":{"name":"Ana"},"wa_id":"5511987650009"}],)
	. qq("messages":[{"from":"5511987650009","id":"wamid.IN1","timestamp":"1700000900","type":"text","text":{"body":"PARAR"}}]))),
	$secret{shop_b}), qr/"opt_outs": 1\b/, 'PARAR sent to B\'s number: an opt-out');
is($node->safe_psql('postgres', "SELECT phone || ' ' || sender FROM wa_notify.blocked WHERE source = 'opt_out'"),
	'5511987650009 shop_b', 'the block records that it came to sender shop_b');

$relay->stop;
done_testing();

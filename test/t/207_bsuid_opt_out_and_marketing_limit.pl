# The 2026 Cloud API end to end (issue 10): a customer known only by a
# business-scoped user ID (BSUID) says PARAR, and the next message to the
# phone whose send response named that BSUID is skipped, never sent; a
# 131049 answer (Meta's per-user marketing limit) is retried 24 hours after
# the failure and never blacklisted.
#
# Payload shapes, checked against Meta's WhatsApp Business Platform pages:
# - send response contacts[].user_id and the incoming messages webhook with
#   contacts[].user_id / messages[].from_user_id and no phone:
#   "Business-scoped user IDs"
#   (developers.facebook.com/documentation/business-messaging/whatsapp/business-scoped-user-ids/);
# - 131049: "WhatsApp error codes"
#   (developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Digest::SHA qw(hmac_sha256_hex);
use JSON::PP;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaMock;

my $secret = 'bsuidtestappsecret0123';
my $mock = WaMock->new;
my $node = WaMock::setup_node('bsuid', $mock, app_secret => $secret);
sub sql { $node->safe_psql('postgres', $_[0]) }

my $phone = '5511987650001';
my $bsuid = 'BR.13491208655302741918';

# --- the first message's send response names the BSUID ---------------------
$mock->control({ rules => { $phone => { count => 1, user_id => $bsuid } } });
my $first = WaMock::enqueue($node, 'order_placed', 'U1', $phone);
WaMock::wait_status($node, $first, 'sent');
is(sql("SELECT recipient_user_id FROM wa_notify.message WHERE id = $first"), $bsuid,
	'the BSUID of the send response is stored on the message');
is(scalar @{ $mock->posts_to($phone) }, 1, 'one request to that phone so far');
is(sql('SELECT count(*) FROM wa_notify.blocked'), '0', 'nobody blocked before the opt-out');

# --- PARAR from the user, known by BSUID only (username adopted) -----------
my $body = encode_json({
	object => 'whatsapp_business_account',
	entry => [ { id => $WaMock::WABA, changes => [ { field => 'messages', value => {
		messaging_product => 'whatsapp',
		metadata => { display_phone_number => '15550783881', phone_number_id => $WaMock::PNID },
		contacts => [ { profile => { name => 'Ana', username => '@ana' }, user_id => $bsuid } ],
		messages => [ { from_user_id => $bsuid, id => 'wamid.INBOUND1', timestamp => '1764590000',
			type => 'text', text => { body => 'PARAR' } } ] } } ] } ] });
my $sig = 'sha256=' . hmac_sha256_hex($body, $secret);
my $quoted = $body =~ s/'/''/gr;
is(sql("SELECT wa_notify.webhook_receive(convert_to('$quoted', 'UTF8'), '$sig') ->> 'opt_outs'"), '1',
	'the BSUID-only opt-out is applied');
is(sql("SELECT number, source, user_id FROM wa_notify.blacklist"), "$phone|opt_out|$bsuid",
	'the block names the BSUID and the phone its send response belonged to');

# --- the next message to that user is skipped, never sent -------------------
my $second = WaMock::enqueue($node, 'order_placed', 'U2', $phone);
WaMock::wait_status($node, $second, 'skipped');
is(scalar @{ $mock->posts_to($phone) }, 1, 'no second request to that phone');

# --- 131049: retried 24 hours after the failure, never blacklisted ---------
my $limited = '5511987650002';
$mock->control({ rules => { $limited => { count => 1, code => 131049,
	message => '(#131049) This message was not delivered to maintain healthy ecosystem engagement.',
	details => 'In order to maintain a healthy ecosystem engagement, the message failed to be delivered.' } } });
my $mid = WaMock::enqueue($node, 'order_placed', 'U3', $limited);
ok($node->poll_query_until('postgres',
	"SELECT deferred_retries = 1 AND status = 'queued' FROM wa_notify.message WHERE id = $mid"),
	'131049: the message is queued again');
is(sql("SELECT error_code, error_class, next_attempt_at = failed_at + interval '24 hours', wamid IS NULL "
	. "FROM wa_notify.message WHERE id = $mid"), '131049|message|t|t',
	'131049: next attempt 24 hours after its own failure time');
is(sql("SELECT count(*) FROM wa_notify.blocked WHERE phone_key = wa_notify.phone_key('$limited')"), '0',
	'131049: not blacklisted');
is(scalar @{ $mock->posts_to($limited) }, 1, '131049: not resent now');

$node->stop;
done_testing();

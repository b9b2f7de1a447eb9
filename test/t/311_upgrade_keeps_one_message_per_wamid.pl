# Updating a 1.0 install whose message table holds one wamid on several
# messages (rows written by hand: 1.0 had no unique index) keeps the wamid on
# the oldest of them (the one 1.0's webhook matched), clears it on the others
# with a warning, and leaves message_wamid unique; a status for that wamid
# then applies to the oldest message.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaNode;
use WaRelay;

my $secret = 'upgrade-test-app-secret';
my $node = WaNode::preloaded('upgrade');
$node->safe_psql('postgres', qq{
CREATE EXTENSION wa_notify VERSION '1.0';
UPDATE wa_notify.setting SET value = '$secret' WHERE name = 'app_secret';
INSERT INTO wa_notify.message (id, event, order_key, phone, status, wamid) VALUES
  (7, 'order_placed', '7', '5511987654321', 'sent', 'wamid.DUP'),
  (3, 'order_placed', '3', '5511987654322', 'sent', 'wamid.DUP'),
  (9, 'order_placed', '9', '5511987654323', 'sent', 'wamid.DUP'),
  (4, 'order_placed', '4', '5511987654324', 'sent', 'wamid.ONE');
});
is($node->safe_psql('postgres', q{SELECT indisunique FROM pg_index WHERE indexrelid = 'wa_notify.message_wamid'::regclass}),
	'f', '1.0: message_wamid is not unique');

my ($rc, $out, $err) = $node->psql('postgres', q{ALTER EXTENSION wa_notify UPDATE TO '1.1'});
is($rc, 0, 'ALTER EXTENSION wa_notify UPDATE TO 1.1 succeeds');
like($err, qr/WARNING:  wa_notify: 2 messages shared a wamid with an older message; their wamid was cleared/,
	'the update says how many wamids it cleared');
is($node->safe_psql('postgres', q{SELECT string_agg(id || ':' || coalesce(wamid, '-'), ' ' ORDER BY id) FROM wa_notify.message}),
	'3:wamid.DUP 4:wamid.ONE 7:- 9:-', 'the oldest message keeps the wamid, the others lose it');
is($node->safe_psql('postgres', q{SELECT indisunique FROM pg_index WHERE indexrelid = 'wa_notify.message_wamid'::regclass}),
	't', '1.1: message_wamid is unique');

my $body = WaRelay::status_payload('wamid.DUP', 'delivered', '1700000100');
$node->safe_psql('postgres', "SELECT wa_notify.webhook_receive(convert_to(\$b\$$body\$b\$, 'UTF8'), '"
	. WaRelay::signature($body, $secret) . "')");
is($node->safe_psql('postgres', q{SELECT string_agg(id || ':' || status, ' ' ORDER BY id) FROM wa_notify.message}),
	'3:delivered 4:sent 7:sent 9:sent', 'a status for that wamid applies to the oldest message');

$node->stop;
done_testing();

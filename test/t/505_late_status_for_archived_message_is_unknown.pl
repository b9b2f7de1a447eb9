# A status webhook for a message already archived (doc/retention.md): Meta
# retries a webhook "for up to 7 days" (WhatsApp Cloud API, "Webhooks",
# https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks), and a
# message is archived after 8 days untouched, so none should come; one that
# does anyway changes nothing (the archive is never on the webhook's path) and
# is counted as an unknown status, while the same status for a live message
# applies.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaMock;
use WaNode;
use WaHistory;

my $node = WaNode::preloaded('late_status');
$node->safe_psql('postgres', 'CREATE EXTENSION wa_notify');
WaMock::configure($node, phone_number_id => $WaMock::PNID, business_account_id => $WaMock::WABA);
WaHistory::first_maintain_done($node);
WaHistory::add($node, 'postgres', days => 30, order => 'L1', phone => '5511987650001', status => 'sent');
WaHistory::add($node, 'postgres', days => 0, order => 'L2', phone => '5511987650002', status => 'sent');
is(WaHistory::maintain($node)->{moved}, 1, 'the 30-day-old message is archived, the new one stays live');

like(WaMock::webhook_failed($node, 'wamid.HIST-L1', '5511987650001', 131026), qr/"unknown": 1/,
	'a failed status for the archived message matches no message');
is($node->safe_psql('postgres', 'SELECT webhook_unknown_statuses FROM wa_notify.state'), '1',
	'and is counted as an unknown status');
is($node->safe_psql('postgres', q{SELECT status || ' ' || coalesce(error_code::text, '-')
                                    FROM wa_notify.message_archive WHERE order_key = 'L1'}),
	'sent -', 'the archived message is unchanged');
like(WaMock::webhook_failed($node, 'wamid.HIST-L2', '5511987650002', 131026), qr/"applied": 1/,
	'the same status for the live message applies');
is($node->safe_psql('postgres', q{SELECT string_agg(status || ' ' || error_code, ',') FROM wa_notify.message
                                   WHERE order_key = 'L2'}), 'failed 131026', 'the live message failed');
is($node->safe_psql('postgres', q{SELECT count(*) || ' ' || count(*) FILTER (WHERE phone_key = wa_notify.phone_key('5511987650002'))
                                    FROM wa_notify.blocked}), '1 1',
	'only the live message\'s recipient is blacklisted (131026: unreachable)');

$node->stop;
done_testing();

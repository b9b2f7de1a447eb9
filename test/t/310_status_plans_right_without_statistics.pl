# Every statement webhook_receive() runs to find a message by wamid plans
# right on a freshly filled, never-analyzed message table, and after ANALYZE
# (issue 11): the plans of the very statements src/webhook.c prepares are
# read from auto_explain (nested statements, generic plans forced), for
# first statuses, repeats, failures and the locking path (an unknown wamid
# matched by biz_opaque_callback_data).  Each must use the unique
# message_wamid index, never walk message_pkey.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaNode;
use WaRelay;

my $secret = 'plans-test-app-secret';
my $n = 40000;
# no autovacuum: the table stays never-analyzed until the test analyzes it
my $node = WaNode::preloaded('plans', conf => "autovacuum = off\n");
$node->safe_psql('postgres', qq{
CREATE EXTENSION wa_notify;
UPDATE wa_notify.setting SET value = '$secret' WHERE name = 'app_secret';
INSERT INTO wa_notify.message (event, order_key, phone, status, wamid, sent_at)
SELECT 'order_placed', i::text, '55119' || lpad(i::text, 8, '0'), 'sent', 'wamid.P' || i, now()
  FROM generate_series(1, $n) i;
-- one claimed message whose wamid was never stored (matched by callback data)
INSERT INTO wa_notify.message (id, event, order_key, phone, status)
VALUES ($n + 1000, 'order_placed', 'nowamid', '5511987654321', 'sent');
});
is($node->safe_psql('postgres',
	q{SELECT count(*) FROM pg_statistic WHERE starelid = 'wa_notify.message'::regclass}),
	'0', 'the message table has no statistics');

# the statuses of one round: first deliveries, repeats, reads, failures
sub round
{
	my ($k, $ts) = @_;    # wamids k .. k+1
	my $fail = ',"errors":[{"code":131026,"title":"Message undeliverable","message":"Message undeliverable","error_data":{"details":"Message Undeliverable."}}]';
	my @bodies = (
		WaRelay::status_payload("wamid.P$k", 'delivered', $ts),        # first
		WaRelay::status_payload("wamid.P$k", 'delivered', $ts),        # repeat
		WaRelay::status_payload("wamid.P$k", 'read', $ts + 1),         # forward
		WaRelay::status_payload("wamid.P$k", 'sent', $ts - 1),         # backwards: nothing
		WaRelay::status_payload('wamid.P' . ($k + 1), 'failed', $ts, $fail),    # failed
		WaRelay::status_payload('wamid.P' . ($k + 1), 'failed', $ts, $fail),    # its repeat
		WaRelay::status_payload("wamid.NEW$k", 'sent', $ts, ',"biz_opaque_callback_data":"' . ($n + 1000) . '"'),
	);
	return join('', map {
		"SELECT wa_notify.webhook_receive(convert_to(\$b\$$_\$b\$, 'UTF8'), '" . WaRelay::signature($_, $secret) . "');\n"
	} @bodies);
}

# the plans auto_explain logs for the statements that look a message up by wamid
sub wamid_plans
{
	my ($sql) = @_;
	my $pos = -s $node->logfile;
	$node->safe_psql('postgres', qq{
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SET plan_cache_mode = force_generic_plan;
$sql});
	my $log = slurp_file($node->logfile, $pos);
	my @plans = grep { /Query Text: [^\n]*wamid = \$1/ } split /LOG:  duration: [\d.]+ ms  plan:\n/, $log;
	s/\n\S.*//s for @plans;    # up to the next log line
	return @plans;
}

for my $when ('before ANALYZE', 'after ANALYZE')
{
	$node->safe_psql('postgres', 'ANALYZE wa_notify.message') if $when eq 'after ANALYZE';
	my @plans = wamid_plans(round($when eq 'before ANALYZE' ? 101 : 201, 1700000100));
	my %texts;
	for my $p (@plans)
	{
		my ($text) = $p =~ /Query Text: ([^\n]*)/;
		$texts{$text} = 1;
		like($p, qr/Index (Only )?Scan using message_wamid on message/,
			"$when: by the wamid index: " . substr($text, 0, 70));
		unlike($p, qr/message_pkey/, "$when: no walk of message_pkey: " . substr($text, 0, 70));
	}
	# fast sent/delivered/read + their checks, failed + its check, the locking lookup
	cmp_ok(scalar(keys %texts), '>=', 6, "$when: the plans of the distinct statements by wamid (" . scalar(keys %texts) . ')');
	ok((grep { /FOR UPDATE/ } keys %texts), "$when: the locking path's lookup is among them");
}
is($node->safe_psql('postgres', q{SELECT status FROM wa_notify.message WHERE wamid IN ('wamid.P101', 'wamid.P102') ORDER BY id}),
	"read\nfailed", 'the statuses were applied');

$node->stop;
done_testing();

# WaHistory: message history for the retention tests (doc/retention.md).
#
#   WaHistory::first_maintain_done($node, $db);   # the worker's run at start is over
#   WaHistory::add($node, $db, days => 100, status => 'delivered', order => 'A1',
#                  phone => '5511987650001', ...);  # one message, created and last
#                                                   # touched that many days ago
#   my $r = WaHistory::maintain($node, $db);       # maintain()'s jsonb as a hash
package WaHistory;
use strict;
use warnings;
use JSON::PP;
use Test::More;

# The worker runs maintain() once when it starts serving a database, then
# hourly: a test that counts what maintain() does waits for that first run.
sub first_maintain_done
{
	my ($node, $db) = @_;
	ok($node->poll_query_until($db // 'postgres', 'SELECT maintained_at IS NOT NULL FROM wa_notify.state'),
		'the worker ran maintain() when it started');
	return;
}

# One message as a migration or a year of use leaves it: created (and last
# changed) `days` ago, with a phone, WhatsApp ids, params and a source row.
sub add
{
	my ($node, $db, %m) = @_;
	my $days = $m{days};
	my $phone = $m{phone} // '5511987650001';
	my $status = $m{status} // 'delivered';
	my $order = $m{order};
	my $event = $m{event} // 'order_placed';
	my $err = defined $m{error} ? "'$m{error}'" : 'NULL';
	return $node->safe_psql($db // 'postgres', qq{
		INSERT INTO wa_notify.message (event, order_key, phone, params, status, wamid, wa_id,
		                               recipient_user_id, source_row, created_at, updated_at, sent_at,
		                               delivered_at, failed_at, error_message, pricing_category, billable)
		VALUES ('$event', '$order', '$phone',
		        jsonb_build_object('customer_name', 'Maria Souza', 'order_number', '$order', 'phone', '$phone',
		                           'total', '120,50'),
		        '$status', 'wamid.HIST-$order', '$phone', 'BR.bsuid-$phone',
		        jsonb_build_object('id', '$order', 'phone', '$phone'),
		        now() - interval '$days days', now() - interval '$days days',
		        CASE WHEN '$status' <> 'skipped' THEN now() - interval '$days days' END,
		        CASE WHEN '$status' IN ('delivered', 'read') THEN now() - interval '$days days' END,
		        CASE WHEN '$status' = 'failed' THEN now() - interval '$days days' END,
		        $err, 'utility', '$status' IN ('delivered', 'read'))
		RETURNING id});
}

# The message tally (45_tally.sql) counts what the messages say: no row of
# wa_notify._tally_check(), which compares it with a count of every message.
sub tally_exact
{
	my ($node, $db, $what) = @_;
	return Test::More::is($node->safe_psql($db // 'postgres', q{
		SELECT coalesce(string_agg(concat_ws(' ', axis, sender, k, 'tally', tally, 'messages', messages), '; '), '')
		  FROM wa_notify._tally_check()}), '', "$what: the tally counts what the messages say");
}

sub maintain
{
	my ($node, $db) = @_;
	return decode_json($node->safe_psql($db // 'postgres', 'SELECT wa_notify.maintain()'));
}

1;

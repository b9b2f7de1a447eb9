# Anonymization (doc/retention.md): maintain() replaces, in every message
# older than anonymize_after_days (default 90), the phone by its masked form
# and a keyed hash, the WhatsApp ids (wa_id, BSUID, wamid) and the captured
# source row, and params down to order_number.  After it no text column of
# those rows holds the customer's number, while counts(), costs(), the
# message log and the counts per recipient are what they were; younger
# messages keep everything.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaNode;
use WaHistory;

my $node = WaNode::preloaded('anonymize');
$node->safe_psql('postgres', q{CREATE EXTENSION wa_notify;
	SELECT wa_notify.set_rate('utility', '55', 0.008, 'USD', '2020-01-01');});
WaHistory::first_maintain_done($node);

# 100 days old: three recipients (3, 2 and 1 messages); 10 days old: two more
# to the first recipient
my %phone = (ana => '5511987650001', bia => '5521976540002', cid => '5531965430003');
my @old = ([ana => 'delivered'], [ana => 'read'], [ana => 'failed'], [bia => 'delivered'],
	[bia => 'skipped'], [cid => 'read']);
my $n = 0;
for my $m (@old)
{
	$n++;
	WaHistory::add($node, 'postgres', days => 100, order => "OLD$n", phone => $phone{ $m->[0] },
		status => $m->[1],
		error => $m->[1] eq 'failed' ? "Graph error 131026: (11) 98765-0001 is not on WhatsApp" : undef);
}
WaHistory::add($node, 'postgres', days => 10, order => "NEW$_", phone => $phone{ana}) for 1 .. 2;

my $range = q{now() - interval '1 year', now()};
my %report = (
	counts => "SELECT * FROM wa_notify.counts($range)",
	costs => "SELECT * FROM wa_notify.costs($range)",
	message_log => q{SELECT id, created_at, order_key, type, status, sent_at, delivered_at, billable,
	                        pricing_category FROM wa_notify.message_log},
	# messages per recipient, whatever the recipient is written as
	per_recipient => q{SELECT string_agg(n::text, ',' ORDER BY n DESC, first) FROM (
	                     SELECT count(*) AS n, min(order_key) AS first FROM wa_notify.message_history
	                      WHERE created_at < now() - interval '90 days' GROUP BY phone) g});
my %before = map { $_ => $node->safe_psql('postgres', $report{$_}) } keys %report;
is($before{per_recipient}, '3,2,1', 'before: 3, 2 and 1 old messages per recipient');
like($before{costs}, qr/\|utility\|5\|4\|1\|/, 'before: five old messages sent, four billable, one free, in costs()');

# every text of a message, as one string
my $texts = q{SELECT string_agg(row_to_json(h)::text, E'\n' ORDER BY id) FROM wa_notify.message_history h};
my $digits = join('|', values %phone, '98765-0001', '987650001', '976540002', '965430003');
like($node->safe_psql('postgres', $texts), qr/$digits/, 'before: the phones are in the rows');

my $r = WaHistory::maintain($node);
is($r->{anonymized}, 6, 'maintain() anonymized the six old messages');
is($r->{moved}, 8, 'and archived all eight (final, untouched for longer than Meta retries a webhook)');

# no number left in any text column of the old rows
my $old_texts = $node->safe_psql('postgres',
	q{SELECT string_agg(row_to_json(a)::text, E'\n' ORDER BY id) FROM wa_notify.message_archive a
	   WHERE created_at < now() - interval '90 days'});
unlike($old_texts, qr/$digits/, 'after: no phone, wa_id, BSUID or number in any column of the old rows');
is($node->safe_psql('postgres', q{
	SELECT string_agg(DISTINCT concat_ws('|', wa_id, wamid, source_row::text, params::text,
	                                      recipient_user_id ~ '^#[0-9a-f]{16}$', phone ~ '^\+55 \d\d 9••••-••0\d #[0-9a-f]{16}$'), ';')
	  FROM wa_notify.message_archive WHERE created_at < now() - interval '90 days' AND order_key = 'OLD1'}),
	'{"order_number": "OLD1"}|t|t', 'wa_id, wamid and source row gone, params kept to order_number, masked phone and BSUID with a keyed hash');
is($node->safe_psql('postgres', q{SELECT error_message FROM wa_notify.message_archive WHERE order_key = 'OLD3'}),
	'Graph error 131026: [number removed] is not on WhatsApp', 'the number in the error text is scrubbed, the code kept');
is($node->safe_psql('postgres', q{SELECT string_agg(phone || ' ' || (params ->> 'customer_name'), ',')
                                    FROM wa_notify.message_archive WHERE order_key LIKE 'NEW%'}),
	"$phone{ana} Maria Souza,$phone{ana} Maria Souza", 'the 10-day-old messages keep their phone and params');

for my $k (sort keys %report)
{
	is($node->safe_psql('postgres', $report{$k}), $before{$k}, "after: $k unchanged");
}

# a second run finds nothing more to do
$r = WaHistory::maintain($node);
is("$r->{anonymized} $r->{moved}", '0 0', 'a second maintain() anonymizes and moves nothing');
WaHistory::tally_exact($node, 'postgres', 'after anonymizing live and archived messages');

$node->stop;
done_testing();

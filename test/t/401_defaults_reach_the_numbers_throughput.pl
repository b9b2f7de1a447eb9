# Defaults that reach each number's throughput.  With every pacing setting
# at its default (only the credentials set): a number Meta upgraded to
# throughput level HIGH (1,000 msg/s) is not held back by the human-like
# pacing -- a burst larger than the default per-batch cap (50) is sent at
# once, many requests in flight -- while a STANDARD number (80 msg/s) keeps
# the random 3-10 s delays between sends, one request at a time.  Levels:
# Meta's "Throughput" page,
# https://developers.facebook.com/documentation/business-messaging/whatsapp/throughput
# (the phone number's "throughput": {"level": "STANDARD" | "HIGH"}).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaMock;
use WaNode;

my $LATENCY = 0.2;
my $mock = WaMock->new;
$mock->control({ throughput_level => 'STANDARD', rules => { '*' => { delay => $LATENCY } } });
my $node = WaNode::preloaded('throughput', conf => "wa_notify.request_timeout = 5\n");
$node->safe_psql('postgres', 'CREATE EXTENSION wa_notify');
WaMock::configure($node, access_token => $WaMock::TOKEN, phone_number_id => $WaMock::PNID,
	business_account_id => $WaMock::WABA, api_base_url => $mock->base_url);
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM wa_notify.setting
	 WHERE name IN ('min_delay', 'max_delay', 'max_per_batch', 'max_rate', 'max_in_flight')
	   AND value = default_value}), '5', 'the pacing settings are at their defaults');
ok($node->poll_query_until('postgres', q{SELECT throughput_level = 'STANDARD' FROM wa_notify.state}),
	'the connection check read throughput level STANDARD');

# the most requests that arrived at the mock within one response time
sub peak_overlap
{
	my (@t) = sort { $a <=> $b } map { $_->{t} } @_;
	my ($peak, $j) = (0, 0);
	for my $i (0 .. $#t)
	{
		$j++ while $t[$j] < $t[$i] - $LATENCY;
		$peak = $i - $j + 1 if $i - $j + 1 > $peak;
	}
	return $peak;
}

# STANDARD (Meta's default): one message at a time, 3-10 s apart
my @ids = map { WaMock::enqueue($node, 'order_placed', "S$_", "551198800000$_") } 1 .. 3;
WaMock::wait_status($node, $_, 'sent') for @ids;
my @std = sort { $a->{t} <=> $b->{t} } grep { $_->{json}{to} =~ /^5511988/ } @{ $mock->posts };
is(scalar @std, 3, 'STANDARD: 3 POSTs');
my $min_delay = $node->safe_psql('postgres', q{SELECT default_value FROM wa_notify.setting WHERE name = 'min_delay'});
for my $i (1 .. $#std)
{
	cmp_ok($std[$i]{t} - $std[ $i - 1 ]{t}, '>=', $min_delay, "STANDARD: send $i waits at least min_delay ($min_delay s)");
}


# HIGH (the same defaults, after Meta's upgrade): 80 messages, more than
# max_per_batch's 50 per polling interval, sent in one go
$mock->control({ throughput_level => 'HIGH' });
is($node->safe_psql('postgres', 'SELECT throughput_level FROM wa_notify.check_connection()'), 'HIGH',
	'the connection check reads HIGH');
$node->safe_psql('postgres', q{
	INSERT INTO wa_notify.message (event, order_key, phone, params)
	SELECT 'order_placed', 'H' || g, '55119' || lpad(g::text, 8, '0'),
	       '{"customer_name": "Ana", "order_number": "1", "total": "10,00"}'
	  FROM generate_series(1, 80) g});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 80 FROM wa_notify.message WHERE order_key LIKE 'H%' AND status = 'sent'}),
	'HIGH: a burst beyond the default per-batch cap is sent');
my @high = grep { $_->{json}{to} =~ /^5511900/ } @{ $mock->posts };
is(scalar @high, 80, 'HIGH: 80 POSTs');
cmp_ok(peak_overlap(@high), '>', 1, 'HIGH: requests in flight together (no random delays)');

$node->stop;
done_testing();

# A sender's errors and pacing are its own.  Codes as on Meta's "WhatsApp
# error codes" page (WhatsApp Business Platform,
# developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes):
# 190 "Access token has expired" (an authorization error: that number's
# credentials), 130429 "Rate limit hit" (Cloud API throughput reached: that
# number's messages per second).
# - 190 on one sender pauses that sender only: the other keeps sending, and
#   a successful connection check of the paused sender lifts its pause;
# - 130429 on one sender halves that sender's rate factor only;
# - each sender's max_rate spaces its own requests (gaps recorded by the
#   mock), while another sender without a cap is not held back by it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaMock;

my $mock = WaMock->new;
my $node = WaMock::setup_node('senders_errors', $mock);
my $pnid2 = '209876543210987';
WaMock::configure_sender($node, 'store_2', phone_number_id => $pnid2,
	access_token => 'EAAstore2-other-token-9876543210');
my $seq = 0;

# queue messages in one statement: [sender, ...] -> ids
sub enqueue
{
	my @rows = map { sprintf("('order_placed', 'K%d', '5511987%06d', '{\"customer_name\": \"Ana\", \"order_number\": \"K%d\", \"total\": \"1,00\"}', '%s')",
			++$seq, $seq, $seq, $_) } @_;
	return split /\n/, $node->safe_psql('postgres',
		'INSERT INTO wa_notify.message (event, order_key, phone, params, sender) VALUES '
		  . join(', ', @rows) . ' RETURNING id');
}

sub sql { return $node->safe_psql('postgres', $_[0]) }

# --- 190 on store_2: store_2 pauses, default keeps sending -----------------
$mock->control({ sender_rules => { $pnid2 => { code => 190, http => 401 } } });
my ($m1) = enqueue('store_2');
ok($node->poll_query_until('postgres', q{SELECT paused_code = 190 FROM wa_notify.senders WHERE sender = 'store_2'}),
	'190 pauses store_2');
is(sql(q{SELECT paused_reason IS NULL FROM wa_notify.senders WHERE sender = 'default'}), 't',
	'default is not paused');
my ($m2, @d) = enqueue('store_2', 'default', 'default', 'default');
WaMock::wait_status($node, $_, 'sent') for @d;
is(scalar @{ $mock->posts_of($WaMock::PNID) }, 3, 'default sent its three messages');
is(scalar @{ $mock->posts_of($pnid2) }, 1, 'store_2 sent nothing more while paused');
is(sql("SELECT string_agg(status, ',' ORDER BY id) FROM wa_notify.message WHERE id IN ($m1, $m2)"),
	'queued,queued', "store_2's messages wait in the queue");
$mock->control({ sender_rules => { $pnid2 => undef } });
is(sql(q{SELECT api_status FROM wa_notify.check_connection('store_2')}), 'connected',
	"store_2's connection check succeeds");
WaMock::wait_status($node, $_, 'sent') for ($m1, $m2);
is(sql(q{SELECT paused_reason IS NULL FROM wa_notify.senders WHERE sender = 'store_2'}), 't',
	"store_2's pause lifted by its check");
my @gets = grep { $_->{method} eq 'GET' && $_->{path} eq "/v23.0/$pnid2" } @{ $mock->requests };
is($gets[-1]{headers}{authorization}, 'Bearer EAAstore2-other-token-9876543210',
	"the check GETs store_2's number with store_2's token");

# --- templates are per WABA: sync_templates(sender) reads store_2's -------
WaMock::configure_sender($node, 'store_2', business_account_id => '302290129340398');
$mock->control({ templates => [ { name => 'pedido_loja2', language => 'pt_BR', status => 'APPROVED',
	category => 'UTILITY', id => '9001' } ] });
is(sql(q{SELECT templates, events_updated FROM wa_notify.sync_templates('store_2')}), '1|0',
	"store_2's templates synced (the events follow default's)");
is(sql(q{SELECT sender, name, status FROM wa_notify.templates}), 'store_2|pedido_loja2|APPROVED',
	'recorded under store_2');
my ($tget) = grep { $_->{path} =~ m{/message_templates\z} } @{ $mock->requests };
is($tget->{path} . ' ' . $tget->{headers}{authorization},
	'/v23.0/302290129340398/message_templates Bearer EAAstore2-other-token-9876543210',
	"read from store_2's WABA with store_2's token");

# --- 130429 on store_2: only its rate factor is halved ---------------------
$mock->control({ sender_rules => { $pnid2 => { code => 130429, http => 429, count => 1 } } });
my ($t1) = enqueue('store_2');
ok($node->poll_query_until('postgres', "SELECT error_code = 130429 FROM wa_notify.message WHERE id = $t1"),
	'130429 recorded');
is(sql(q{SELECT string_agg(sender || '=' || rate_factor, ',' ORDER BY sender) FROM wa_notify.senders}),
	'default=1,store_2=0.5', "130429 halves store_2's rate factor, not default's");
sql("UPDATE wa_notify.message SET next_attempt_at = now() WHERE id = $t1");
sql('SELECT wa_notify.wake()');
WaMock::wait_status($node, $t1, 'sent');
sql(q{UPDATE wa_notify.sender SET rate_factor = 1 WHERE sender = 'store_2'});

# --- store_2 at 5 msg/s, default uncapped -----------------------------------
WaMock::configure_sender($node, 'store_2', max_rate => 5);
my $before2 = scalar @{ $mock->posts_of($pnid2) };
my $before1 = scalar @{ $mock->posts_of($WaMock::PNID) };
my @ids = enqueue(('store_2') x 6, ('default') x 6);
WaMock::wait_status($node, $_, 'sent') for @ids;
my @p2 = @{ $mock->posts_of($pnid2) }[$before2 .. $before2 + 5];
my @p1 = @{ $mock->posts_of($WaMock::PNID) }[$before1 .. $before1 + 5];
my $min_gap = 1e9;
$min_gap = ($p2[$_]{t} - $p2[$_ - 1]{t} < $min_gap ? $p2[$_]{t} - $p2[$_ - 1]{t} : $min_gap) for 1 .. 5;
# the pacer spaces starts by 1/max_rate; arrival jitter at the mock stays far below 50 ms
cmp_ok($min_gap, '>=', 0.2 - 0.05, "store_2's requests are spaced by its max_rate (min gap $min_gap s)");
cmp_ok($p1[-1]{t}, '<', $p2[-1]{t}, "default's uncapped messages are not held back by store_2's cap");

# --- a slow sender holds nobody: store_2's number stops answering ----------
# (the request timeout raised so far that its request stays in flight for
# the whole check, whatever the machine's speed)
$node->safe_psql('postgres', 'ALTER SYSTEM SET wa_notify.request_timeout = 170');
$node->reload;
WaNode::settle($node);      # the worker has read it
$mock->control({ sender_rules => { $pnid2 => { timeout => JSON::PP::true } } });
my ($slow) = enqueue('store_2');
my $slow_to = sql("SELECT phone FROM wa_notify.message WHERE id = $slow");
# (counted by its recipient: a retry of an earlier message may reach the
# mock meanwhile on a busy machine)
my $slow_posts = sub { scalar grep { $_->{json}{to} eq $slow_to } @{ $mock->posts_of($pnid2) } };
my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
$mock->wait_posts(scalar(@{ $mock->posts }) + 1) while $slow_posts->() == 0 && time < $deadline;
is($slow_posts->(), 1, "store_2's request is out and gets no answer");
my @fast = enqueue(('default') x 3);
WaMock::wait_status($node, $_, 'sent') for @fast;
is(sql("SELECT status FROM wa_notify.message WHERE id = $slow"), 'sending',
	"default's later messages were sent and recorded while store_2's request was still in flight");

$node->stop;
done_testing();

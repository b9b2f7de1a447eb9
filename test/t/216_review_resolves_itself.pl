# A message left in 'review' (the worker stopped while its request was in
# flight, at_most_once) resolves itself: a status webhook for it moves it on
# (matched by biz_opaque_callback_data: it has no wamid); one that gets no
# status within review_window, while webhooks are known to flow (a callback
# received after its claim), is queued again and sent once (review_resend =
# auto).  Without a callback since the claim it stays in review and the
# status card says why; review_resend = never leaves it for a person.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaMock;

my $mock = WaMock->new;
# review_window = 3 s: below configure()'s 60 s floor, set in the settings
# table directly (WaMock::configure) so that the test does not wait 60 s.
# request_timeout 300 s: an unanswered request stays in flight until the
# worker is stopped.
my $node = WaMock::setup_node('review', $mock, max_in_flight => 4, review_window => 3,
	request_timeout => 300);
sub sql { $node->safe_psql('postgres', $_[0]) }

my @phones = map { sprintf('55119%08d', 70000 + $_) } 1 .. 3;

# three requests the mock never answers: in flight when the worker stops
$mock->control({ rules => { '*' => { timeout => JSON::PP::true } } });
my @ids = map { WaMock::enqueue($node, 'order_placed', "V$_", $phones[ $_ - 1 ]) } 1 .. 3;
my $posts = $mock->wait_posts(3);
is(scalar @$posts, 3, 'three requests reached the mock');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 3 FROM wa_notify.message WHERE status = 'sending' AND order_key LIKE 'V%'"),
	'the three are in flight');
$mock->control({ rules => { '*' => undef } });
my $pid = sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'");
sql("SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 3 FROM wa_notify.message WHERE status = 'review' AND order_key LIKE 'V%'"),
	'the restarted worker put them in review');
isnt(sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'"), $pid,
	'a new worker');
is(sql('SELECT webhook_last_callback IS NULL FROM wa_notify.state'), 't', 'no callback ever received');

# --- no webhook since the claim: past review_window they stay, and the card says why
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 3 FROM wa_notify.message
	 WHERE order_key LIKE 'V%' AND status = 'review' AND held_reason LIKE 'no webhook has arrived since it was claimed%'}),
	'without callbacks: past review_window they stay in review, held_reason says why');
is(sql("SELECT count(*) FROM wa_notify.message WHERE order_key LIKE 'V%' AND status = 'review' AND claimed_at <= now() - interval '3 s'"),
	'3', 'their review_window is over');
like(sql('SELECT review_reasons FROM wa_notify.status'), qr/^no webhook has arrived since it was claimed/,
	'the status card says why they stay');
is(sql('SELECT queue_review FROM wa_notify.status'), '3', 'the card counts them');
is(scalar @{ $mock->posts }, 3, 'nothing was sent again');

# --- review_resend = never; a status arrives for the first one (by callback data)
WaMock::configure($node, review_resend => 'never');
my ($first) = grep { $_->{json}{to} eq $phones[0] } @$posts;
my $callback_data = $first->{json}{biz_opaque_callback_data};
ok(defined $callback_data, 'the request carried biz_opaque_callback_data');
WaMock::webhook_status($node, 'wamid.LATE0001', $phones[0], 'sent', $callback_data);
is(sql("SELECT status || ' ' || wamid FROM wa_notify.message WHERE id = $ids[0]"), 'sent wamid.LATE0001',
	'a review message that gets a status takes it');
is(sql("SELECT (SELECT webhook_last_callback FROM wa_notify.state) > max(claimed_at) FROM wa_notify.message WHERE order_key LIKE 'V%'"),
	't', 'a callback was received after the claims: webhooks flow');
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) = 2 FROM wa_notify.message
	 WHERE id IN ($ids[1], $ids[2]) AND status = 'review' AND held_reason LIKE 'review_resend is never%'}),
	'review_resend = never: they stay in review although webhooks flow');
like(sql('SELECT review_reasons FROM wa_notify.status'), qr/^review_resend is never/, 'the card says so');
is(scalar @{ $mock->posts }, 3, 'still nothing sent again');

# --- review_resend = auto: queued again and sent once
WaMock::configure($node, review_resend => 'auto');
WaMock::wait_status($node, $_, 'sent') for @ids[1, 2];
is(sql("SELECT string_agg(review_requeues::text, ',' ORDER BY id) FROM wa_notify.message WHERE order_key LIKE 'V%'"),
	'0,1,1', 'the two without a status were queued again once; the one with a status was not');
# (error_message said why while it was queued; the successful send clears it,
# review_requeues and the server log keep it)
ok($node->log_contains(qr/message\(s\) in review queued again: no status within review_window while webhooks arrived/),
	'the server log says why');
is(sql("SELECT count(*) FROM wa_notify.message WHERE id IN ($ids[1], $ids[2]) AND wamid LIKE 'wamid.MOCK%' AND held_reason IS NULL"),
	'2', 'each has the wamid of its new send');
my %per_phone;
$per_phone{ $_->{json}{to} }++ for @{ $mock->posts };
is(join(',', map { $per_phone{$_} // 0 } @phones), '1,2,2',
	'requests per phone: the accepted one once, the two never answered once more each');
is(sql('SELECT queue_review FROM wa_notify.status'), '0', 'none left in review');
is(sql('SELECT review_reasons IS NULL FROM wa_notify.status'), 't', 'the card has nothing to say');

$node->stop;
done_testing();

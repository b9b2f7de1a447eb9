# Since October 2025 Meta counts the messaging limit (unique recipients
# outside the customer-service window in a moving 24 hours) per business
# portfolio, shared by all its numbers (Meta's "Messaging limits" page,
# developers.facebook.com/docs/whatsapp/messaging-limits).  Two senders of
# one portfolio with daily_recipient_limit => 3 reach three recipients in
# all, not six; a sender of another portfolio keeps its own count.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaMock;

my $mock = WaMock->new;
my $node = WaMock::setup_node('senders_portfolio', $mock);
WaMock::configure_sender($node, 'default', portfolio => 'bp_1', daily_recipient_limit => 3);
WaMock::configure_sender($node, 'store_2', phone_number_id => '209876543210987',
	access_token => 'EAAstore2-other-token-9876543210', portfolio => 'bp_1', daily_recipient_limit => 3);
WaMock::configure_sender($node, 'brand_x', phone_number_id => '309876543210987',
	access_token => 'EAAbrandx-other-token-9876543210', portfolio => 'bp_2', daily_recipient_limit => 1);

# four recipients for each sender of bp_1, two for brand_x
my @rows;
for my $s ('default', 'store_2')
{
	push @rows, map { sprintf("('order_placed', '%s-%d', '55119876500%02d', '{\"customer_name\": \"Ana\", \"order_number\": \"1\", \"total\": \"1,00\"}', '%s')",
			$s, $_, ($s eq 'default' ? 0 : 10) + $_, $s) } 1 .. 4;
}
push @rows, map { sprintf("('order_placed', 'brand_x-%d', '55119876500%02d', '{\"customer_name\": \"Ana\", \"order_number\": \"1\", \"total\": \"1,00\"}', 'brand_x')", $_, 20 + $_) } 1 .. 2;
$node->safe_psql('postgres', 'INSERT INTO wa_notify.message (event, order_key, phone, params, sender) VALUES '
	  . join(', ', @rows));

ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 4 FROM wa_notify.message WHERE status = 'sent'}), 'four messages sent');
# a full cycle since, claiming nothing: the rest wait
WaNode::settle($node);
my $posts = $mock->posts;
is(scalar @$posts, 4, 'four requests in all');
is(scalar(grep { $_->{path} !~ m{/309876543210987/} } @$posts), 3,
	'three recipients for the two senders of portfolio bp_1, not six');
is(scalar(grep { $_->{path} =~ m{/309876543210987/} } @$posts), 1, 'one for brand_x, its own portfolio\'s limit');
is($node->safe_psql('postgres',
	q{SELECT string_agg(sender || '=' || queued, ',' ORDER BY sender) FROM wa_notify.senders}),
	'brand_x=1,default=' . (4 - scalar(grep { $_->{path} =~ m{/$WaMock::PNID/} } @$posts))
	  . ',store_2=' . (4 - scalar(grep { $_->{path} =~ m{/209876543210987/} } @$posts)),
	'the others stay queued for the next 24 hours');

$node->stop;
done_testing();

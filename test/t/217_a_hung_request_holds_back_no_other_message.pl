# A request the Graph API never answers holds back no other message, not
# even its own sender's: a message queued while it hangs is claimed and
# sent at once (the pipeline that waits for the hung request keeps looking
# at the queue), not when the request times out (here 300 s).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaMock;

my $mock = WaMock->new;
my $node = WaMock::setup_node('hung', $mock, max_in_flight => 4, request_timeout => 300);
sub sql { $node->safe_psql('postgres', $_[0]) }

my ($hung, $other) = ('5511970001001', '5511970001002');
$mock->control({ rules => { $hung => { timeout => JSON::PP::true } } });
my $first = WaMock::enqueue($node, 'order_placed', 'H1', $hung);
my $posts = $mock->wait_posts(1);
is(scalar @$posts, 1, 'the first request is out (and gets no answer)');
is($posts->[0]{json}{to}, $hung, 'to the recipient whose requests hang');

# queued only now, while the first request is in flight
my $second = WaMock::enqueue($node, 'order_placed', 'H2', $other);
WaMock::wait_status($node, $second, 'sent');
$posts = $mock->posts;
is(scalar @$posts, 2, 'one more request');
is($posts->[1]{json}{to}, $other, 'for the message queued while the first hung');
is(sql("SELECT status FROM wa_notify.message WHERE id = $first"), 'sending',
	'the hung request is still in flight (its timeout is 300 s)');

$node->stop('fast');
done_testing();

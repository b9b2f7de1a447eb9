# The worker does nothing on a hot standby and starts serving when the
# standby is promoted.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaMock;
use WaNode;

my $mock = WaMock->new;
# the primary's worker serves another database, so that only the standby's
# worker could send the replicated messages
my $primary = WaNode::preloaded('primary', allows_streaming => 1, database => 'template1');
$primary->safe_psql('postgres', 'CREATE EXTENSION wa_notify');
WaMock::configure($primary, access_token => $WaMock::TOKEN, phone_number_id => $WaMock::PNID,
	api_base_url => $mock->base_url, min_delay => 0, max_delay => 0, max_rate => 0, recipient_gap => 0);
$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->append_conf('postgresql.conf', "wa_notify.database = 'postgres'\n");
$standby->start;

my @ids = map { WaMock::enqueue($primary, 'order_placed', "S$_", "551198888000$_") } 1 .. 3;
$primary->wait_for_catchup($standby);
ok($standby->poll_query_until('postgres',
	"SELECT query = 'standby: waiting for promotion' FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'"),
	'standby worker waits for promotion');
# a wake-up the standby's worker has handled (its shared-memory counter
# moved) leaves it waiting and sends nothing
my $seen = $standby->safe_psql('postgres', 'SELECT wakes_seen FROM wa_notify._worker_shared()');
is($standby->safe_psql('postgres', 'SELECT wa_notify.wake()'), 't', 'wake() reaches the standby worker');
ok($standby->poll_query_until('postgres',
	"SELECT wakes_seen > $seen FROM wa_notify._worker_shared()"), 'the standby worker handled the wake-up');
is($standby->safe_psql('postgres',
	"SELECT query FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'"),
	'standby: waiting for promotion', 'still waiting after the wake-up');
is($standby->safe_psql('postgres', "SELECT count(*) FROM wa_notify.message WHERE status = 'queued'"), '3',
	'messages replicated, queued');
is(scalar @{ $mock->posts }, 0, 'nothing sent from the standby');

$primary->stop;
$standby->promote;
ok($standby->poll_query_until('postgres',
	"SELECT count(*) = 3 FROM wa_notify.message WHERE status = 'sent'"), 'promoted standby sends');
my @p = @{ $mock->posts };
is(scalar @p, 3, 'each message posted once');
is(join(',', sort map { $_->{json}{to} } @p), '5511988880001,5511988880002,5511988880003', 'to the right phones');
$standby->stop;
done_testing();

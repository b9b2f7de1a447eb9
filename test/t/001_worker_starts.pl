# The worker starts with shared_preload_libraries, names itself in
# pg_stat_activity, and idles (without error) until the extension exists.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaNode;

my $node = WaNode::preloaded('worker');

ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'"),
	'worker is listed in pg_stat_activity');
is($node->safe_psql('postgres',
	"SELECT application_name FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'"),
	'wa_notify worker', 'worker names itself');

# Without shared_preload_libraries: CREATE EXTENSION works (a session loads
# the library itself), the SQL surface answers, and the status card says that
# no worker runs.
my $plain = PostgreSQL::Test::Cluster->new('not_preloaded');
$plain->init;
$plain->start;
$plain->safe_psql('postgres', 'CREATE EXTENSION wa_notify');
is($plain->safe_psql('postgres', q{SELECT worker_running FROM wa_notify.status}), 'f',
	'not preloaded: the status card shows no worker');
is($plain->safe_psql('postgres', q{SELECT wa_notify.normalize_phone('(11) 98765-4321')}), '5511987654321',
	'not preloaded: the C functions work');
is($plain->safe_psql('postgres', q{SELECT wa_notify.wake()}), 'f', 'not preloaded: wake() has no worker to wake');
$plain->stop;

$node->stop;
done_testing();

# The worker starts with shared_preload_libraries, names itself in
# pg_stat_activity, and idles (without error) until the extension exists.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('worker');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'wa_notify'
wa_notify.database = 'postgres'
});
$node->start;

ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'"),
	'worker is listed in pg_stat_activity');
is($node->safe_psql('postgres',
	"SELECT application_name FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'"),
	'wa_notify worker', 'worker names itself');

$node->stop;
done_testing();

# One worker per database, no database named anywhere: the launcher
# ("wa_notify launcher") serves every database that has the extension with
# a worker of its own ("wa_notify worker"), and no other.  A database gets
# its worker when CREATE EXTENSION commits (also one created after the
# server started), loses it at DROP EXTENSION, can be dropped while served
# (DROP DATABASE does not fail with "being accessed by other users"), and
# the server log never shows a FATAL.  ALTER DATABASE ... RENAME and
# CREATE DATABASE ... TEMPLATE of a served database work too.  Beyond wa_notify.max_databases a
# WARNING names the databases left unserved and their status card says so.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaMock;
use WaNode;

my $mock = WaMock->new;

# the databases with a worker, as pg_stat_activity lists them
sub served
{
	my ($node) = @_;
	return $node->safe_psql('postgres', q{
		SELECT coalesce(string_agg(datname, ',' ORDER BY datname), '') FROM pg_stat_activity
		 WHERE backend_type = 'wa_notify worker'});
}

sub served_is
{
	my ($node, $want, $what) = @_;
	ok($node->poll_query_until('postgres', qq{
		SELECT coalesce(string_agg(datname, ',' ORDER BY datname), '') = '$want' FROM pg_stat_activity
		 WHERE backend_type = 'wa_notify worker'}), $what)
	  or diag('served: ' . served($node));
	return;
}

sub shop
{
	my ($node, $db) = @_;
	$node->safe_psql($db, 'CREATE EXTENSION wa_notify');
	WaMock::configure_in($node, $db, access_token => $WaMock::TOKEN, phone_number_id => $WaMock::PNID,
		business_account_id => $WaMock::WABA, api_base_url => $mock->base_url,
		min_delay => 0, max_delay => 0, max_rate => 0, recipient_gap => 0, max_per_batch => 100000);
	return;
}

# a message queued in $db reaches the mock (its own phone) and is 'sent'
sub sends
{
	my ($node, $db, $phone) = @_;
	my $id = WaMock::enqueue_in($node, $db, 'order_placed', "R-$db-$phone", $phone);
	ok($node->poll_query_until($db, "SELECT status = 'sent' FROM wa_notify.message WHERE id = $id"),
		"$db: its message is sent");
	# the mock logs a request before it answers it
	is(scalar @{ $mock->posts_to($phone) }, 1, "$db: one POST to $phone at the mock");
	return;
}

# --- three databases, two with the extension --------------------------------
my $node = WaNode::preloaded('per_db', database => '',
	conf => "wa_notify.request_timeout = 2\n");
$node->safe_psql('postgres', "CREATE DATABASE shop_a; CREATE DATABASE shop_b; CREATE DATABASE shop_c");

# created after the server started: served once they have the extension
shop($node, 'shop_a');
shop($node, 'shop_b');
served_is($node, 'shop_a,shop_b', 'created after the start: each database with the extension gets a worker');

# at start: the launcher finds them by itself
$node->restart;
ok($node->poll_query_until('postgres', q{
	SELECT query = 'serving 2 databases: shop_a, shop_b' FROM pg_stat_activity
	 WHERE backend_type = 'wa_notify launcher'}), 'at start the launcher serves shop_a and shop_b, not shop_c')
  or diag($node->safe_psql('postgres', q{SELECT query FROM pg_stat_activity WHERE backend_type = 'wa_notify launcher'}));
is(served($node), 'shop_a,shop_b', 'one "wa_notify worker" per database with the extension, none in shop_c');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'wa_notify launcher'}),
	'1', 'one "wa_notify launcher"');
is($node->safe_psql('shop_a', 'SELECT worker_running, worker_service FROM wa_notify.status'), 't|served',
	'shop_a: the status card says it is served');
sends($node, 'shop_a', '5511900000001');
sends($node, 'shop_b', '5511900000002');

# CREATE EXTENSION in the third: it gets a worker (no timing asserted)
shop($node, 'shop_c');
served_is($node, 'shop_a,shop_b,shop_c', 'CREATE EXTENSION in shop_c: it is served');
sends($node, 'shop_c', '5511900000003');

# DROP EXTENSION: its worker leaves (and is not started again)
$node->safe_psql('shop_c', 'DROP EXTENSION wa_notify');
served_is($node, 'shop_a,shop_b', 'DROP EXTENSION in shop_c: its worker is gone');

# a worker terminated comes back (the launcher restarts it)
my $pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'wa_notify worker' AND datname = 'shop_a'});
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'wa_notify worker' AND datname = 'shop_a' AND pid <> $pid}),
	'shop_a: a terminated worker comes back');

# DROP DATABASE of a served database succeeds
my ($ret, $out, $err) = $node->psql('postgres', 'DROP DATABASE shop_b');
is($ret, 0, 'DROP DATABASE of a served database succeeds') or diag($err);
served_is($node, 'shop_a', 'shop_b is gone, and so is its worker');
ok($node->poll_query_until('postgres', q{
	SELECT query = 'serving 1 database: shop_a' FROM pg_stat_activity WHERE backend_type = 'wa_notify launcher'}),
	'the launcher serves shop_a only');
sends($node, 'shop_a', '5511900000004');

# ALTER DATABASE ... RENAME and CREATE DATABASE ... TEMPLATE need the
# database to themselves too: they work, and the worker comes back
($ret, $out, $err) = $node->psql('postgres', 'ALTER DATABASE shop_a RENAME TO shop_x');
is($ret, 0, 'ALTER DATABASE ... RENAME of a served database succeeds') or diag($err);
served_is($node, 'shop_x', 'the renamed database is served again');
($ret, $out, $err) = $node->psql('postgres', 'CREATE DATABASE shop_y TEMPLATE shop_x');
is($ret, 0, 'CREATE DATABASE ... TEMPLATE a served database succeeds') or diag($err);
served_is($node, 'shop_x,shop_y', 'a database copied from one with the extension is served');
sends($node, 'shop_y', '5511900000005');

my $log = slurp_file($node->logfile);
unlike($log, qr/FATAL/, 'no FATAL anywhere in the server log');
unlike($log, qr/being accessed by other users/, 'no DROP DATABASE was refused');
$node->stop;

# --- max_databases = 1, two databases with the extension ----------------------
my $small = WaNode::preloaded('max_db', database => '',
	conf => "wa_notify.max_databases = 1\nwa_notify.request_timeout = 2\n");
$small->safe_psql('postgres', 'CREATE DATABASE db_one; CREATE DATABASE db_two');
$small->safe_psql('db_one', 'CREATE EXTENSION wa_notify');
served_is($small, 'db_one', 'db_one is served');
$small->safe_psql('db_two', 'CREATE EXTENSION wa_notify');
my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
sleep 0.1 until slurp_file($small->logfile) =~ /WARNING:.*unserved: "db_two"/ || time > $deadline;
like(slurp_file($small->logfile), qr/WARNING:  wa_notify serves 1 databases \(wa_notify.max_databases\): unserved: "db_two"/,
	'a WARNING names the database left unserved');
like($small->safe_psql('db_two', 'SELECT worker_running::text || worker_service FROM wa_notify.status'),
	qr/^falseunserved: wa_notify\.max_databases \(1\)/, 'its status card says it is unserved, and why');
is(served($small), 'db_one', 'still one worker, for db_one');
unlike(slurp_file($small->logfile), qr/FATAL/, 'no FATAL in the server log');
$small->stop;

done_testing();

# WaNode: a started test cluster with wa_notify preloaded, its worker serving
# the "postgres" database (or the one given), and what its worker costs.
#
#   my $node = WaNode::preloaded('name');
#   my $node = WaNode::preloaded('name', allows_streaming => 1, conf => "...", database => 'x');
#   my $r = WaNode::worker_rest($node, 10);   # {commits, ticks, wakes} over 10 s
#   my $out = WaNode::sql($node, 'SELECT ...');   # in "postgres", dies on error
#   WaNode::shop_roles($node);    # after CREATE EXTENSION: roles as in a real install
package WaNode;
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

sub preloaded
{
	my ($name, %opt) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => $opt{allows_streaming} ? 1 : 0);
	my $db = $opt{database} // 'postgres';
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'wa_notify'
wa_notify.database = '$db'
} . ($opt{conf} // ''));
	$node->start;
	return $node;
}

# What the wa_notify worker does over $secs seconds of wall time: commits in
# the cluster's databases but template1 (pg_stat_database; the probes read it
# from template1, so they add none), CPU ticks of the worker process (utime
# + stime from /proc/PID/stat) and latch wake-ups it handled (shared memory,
# exact).  Counts, not timings: a resting worker scores ~0 on all three
# however slow the machine is; a spinning one scores thousands.
sub worker_rest
{
	my ($node, $secs) = @_;
	my $commits = sub {
		return $node->safe_psql('template1',
			q{SELECT sum(xact_commit) FROM pg_stat_database WHERE datname IS DISTINCT FROM 'template1'});
	};
	my $pid = $node->safe_psql('template1',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'});
	die "no wa_notify worker" unless $pid;
	_settle($node);
	my $w0 = _wakes_seen($node);
	my $c0 = $commits->();
	my $t0 = _ticks($pid);
	sleep($secs);
	my $t1 = _ticks($pid);
	my $c1 = $commits->();
	my $w1 = _wakes_seen($node);
	return { commits => $c1 - $c0, ticks => $t1 - $t0, wakes => $w1 - $w0, pid => $pid };
}

sub _ticks
{
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/stat") or die "no process $pid: $!";
	my $stat = <$fh>;
	close $fh;
	$stat =~ s/^.*\) //s;    # the fields after "pid (comm) "
	my @f = split / /, $stat;
	return $f[11] + $f[12];   # utime and stime (fields 14 and 15 of proc(5))
}

# is the extension installed in "postgres"?
sub _has_extension
{
	my ($node) = @_;
	return $node->safe_psql('postgres', q{SELECT count(*) FROM pg_extension WHERE extname = 'wa_notify'});
}

# the latch wake-ups the worker handled, from shared memory: through the
# extension where it exists (also on a standby), else a temporary function
sub _wakes_seen
{
	my ($node) = @_;
	my $has = _has_extension($node);
	return $node->safe_psql('postgres', 'SELECT wakes_seen FROM wa_notify._worker_shared()') if $has;
	return $node->safe_psql('postgres', q{
		CREATE FUNCTION pg_temp.worker_shared(OUT pid int, OUT started_at timestamptz, OUT starts bigint,
		                                      OUT wakeups bigint, OUT wakes_seen bigint)
		    AS '$libdir/wa_notify', 'wa_notify_worker_shared' LANGUAGE C;
		SELECT wakes_seen FROM pg_temp.worker_shared()});
}

# Let the worker finish what earlier wake-ups asked of it (CREATE EXTENSION
# wakes it twice: 1.0's script calls wake() at once, 1.1's at commit): wake
# it once more and wait until it has handled that wake-up and is back on its
# latch (wait event "Extension"), so the window starts at rest.
sub _settle
{
	my ($node) = @_;
	my $seen = _wakes_seen($node);
	my $has = _has_extension($node);
	$node->safe_psql('postgres', $has ? 'SELECT wa_notify.wake()' : q{
		CREATE FUNCTION pg_temp.wake() RETURNS boolean AS '$libdir/wa_notify', 'wa_notify_wake' LANGUAGE C;
		SELECT pg_temp.wake()});
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	until (_wakes_seen($node) > $seen)
	{
		die "the wa_notify worker did not handle a wake-up" if time > $deadline;
		select(undef, undef, undef, 0.05);
	}
	$node->poll_query_until('template1', q{
		SELECT wait_event = 'Extension' FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'})
	  or die "the wa_notify worker is not back on its latch";
	return;
}

# the worker has handled a wake-up given now (a whole cycle) and rests again
sub settle { return _settle(@_) }

# one statement in the "postgres" database; its output as text
sub sql
{
	my ($node, $query) = @_;
	return $node->safe_psql('postgres', $query);
}

# The roles of a real install, in "postgres": the shop's application role
# "shop" (LOGIN, owns schema public as a PG15 database owner does, so its
# tables and functions are its own) and the admin role "wa_admin" with
# exactly the grants of doc/roles.md.  Run after CREATE EXTENSION.
sub shop_roles
{
	my ($node) = @_;
	$node->safe_psql('postgres', q{
CREATE ROLE shop LOGIN;
ALTER SCHEMA public OWNER TO shop;
CREATE ROLE wa_admin NOLOGIN;
GRANT USAGE ON SCHEMA wa_notify TO wa_admin;
GRANT SELECT ON ALL TABLES IN SCHEMA wa_notify TO wa_admin;
GRANT INSERT, UPDATE ON wa_notify.message TO wa_admin;
GRANT USAGE ON SEQUENCE wa_notify.message_id_seq TO wa_admin;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA wa_notify TO wa_admin;
});
	return;
}

1;

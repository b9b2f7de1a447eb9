# The worker is always there: terminated by pg_terminate_backend() it exits
# non-zero and the postmaster starts it again (bgw_restart_time, 5 s); the
# status card says since when it runs and how many restarts it had; a
# server shutdown stops it with exit code 0 (no restart, no noise).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaNode;

my $node = WaNode::preloaded('always_back');
$node->safe_psql('postgres', 'CREATE EXTENSION wa_notify');
ok($node->poll_query_until('postgres', 'SELECT worker_running FROM wa_notify.status'),
	'the worker runs');
my ($pid, $started, $restarts) = split /\|/, $node->safe_psql('postgres',
	'SELECT w.pid, s.worker_started_at, s.worker_restarts FROM wa_notify.status s, wa_notify._worker_shared() w');
is($restarts, '0', 'no restart yet');

my $t0 = time();
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)"), 't', 'pg_terminate_backend() of the worker');
ok($node->poll_query_until('postgres', qq{
SELECT pid IS NOT NULL AND pid <> $pid FROM wa_notify._worker_shared()}), 'a new worker runs');
my $back = time() - $t0;
diag(sprintf('worker back %.1f s after pg_terminate_backend()', $back));

my $card = $node->safe_psql('postgres', qq{
SELECT worker_running, worker_restarts, worker_started_at > '$started'::timestamptz FROM wa_notify.status});
is($card, 't|1|t', 'the status card: running, one restart, started after the first one');
like(slurp_file($node->logfile), qr/background worker "wa_notify worker" \(PID $pid\) exited with exit code 1/,
	'the terminated worker exited with code 1 (so it is restarted)');

# it serves again: a wake-up is handled by the new process
my $seen = $node->safe_psql('postgres', 'SELECT wakes_seen FROM wa_notify._worker_shared()');
$node->safe_psql('postgres', 'SELECT wa_notify.wake()');
ok($node->poll_query_until('postgres', "SELECT wakes_seen > $seen FROM wa_notify._worker_shared()"),
	'the new worker answers a wake-up');

$node->stop('fast');
my $log = slurp_file($node->logfile);
my @exits = ($log =~ /background worker "wa_notify worker" \(PID \d+\) exited with exit code 1/g);
is(scalar(@exits), 1, 'a shutdown stops the worker with exit code 0 (no second exit code 1)');
unlike($log, qr/terminated by signal/, 'no process crashed');
done_testing();

# The worker never takes the server down: while 20,000 messages drain
# through the mock, every dispatch setting changes at random moments
# (max_in_flight up and down, api_base_url, the token, the master switch,
# the delays, the rate cap).  No process is terminated by a signal, the
# worker is never restarted, no message goes to review (no crash
# recovery), and every message ends sent.  (1.0 segfaulted on the first
# max_in_flight raise: graph.c grew its slot array under libcurl's feet.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaNode;
use WaMock;

my $n_messages = $ENV{WA_CHURN_MESSAGES} // 20000;    # scripts/asan.sh runs fewer
my $churn_secs = 25;

my $mock = WaMock->new;
my $node = WaMock::setup_node('churn', $mock, max_in_flight => 4);
my $pid = $node->safe_psql('postgres', 'SELECT pid FROM wa_notify._worker_shared()');
$node->safe_psql('postgres', qq{
INSERT INTO wa_notify.message (event, order_key, phone, params)
SELECT 'order_placed', 'churn-' || g, '55119' || lpad(g::text, 8, '0'),
       jsonb_build_object('customer_name', 'Ana', 'order_number', g, 'total', '10,00')
  FROM generate_series(1, $n_messages) g});

my $base = $mock->base_url;
(my $other_base = $base) =~ s/127\.0\.0\.1/localhost/;
# each change as configure() makes it (the worker is woken by each)
my @changes = (
	map({ "max_in_flight => $_" } 1, 2, 4, 16, 64, 200, 3, 32),
	"api_base_url => '$base'", "api_base_url => '$other_base'",
	"access_token => 'EAAGchurnTokenA00000000001'", "access_token => 'EAAGchurnTokenB00000000002'",
	'enabled => false', 'enabled => true', 'enabled => true',
	'min_delay => 0, max_delay => 0', 'min_delay => 0, max_delay => 0.02',
	'max_rate => 0', 'max_rate => 400', 'max_rate => 0',
	'max_per_batch => 100000', 'max_per_batch => 500',);

srand(13);
my $t_end = time() + $churn_secs;
my $n_changes = 0;
while (time() < $t_end)
{
	my $c = $changes[ int(rand(@changes)) ];
	$node->safe_psql('postgres', "SELECT wa_notify.configure($c)");
	$n_changes++;
	usleep(int(rand(300_000)));    # the moment of the next change: random
}
# then a sending configuration, and the queue drains
$node->safe_psql('postgres', qq{SELECT wa_notify.configure(enabled => true, max_in_flight => 64,
    min_delay => 0, max_delay => 0, max_rate => 0, max_per_batch => 100000, api_base_url => '$base')});
diag("$n_changes settings changes in $churn_secs s; "
	  . $node->safe_psql('postgres', "SELECT count(*) FILTER (WHERE status = 'sent') FROM wa_notify.message")
	  . " messages sent meanwhile");
ok($node->poll_query_until('postgres', q{
SELECT NOT EXISTS (SELECT 1 FROM wa_notify.message WHERE status IN ('queued', 'sending'))}),
	'every message reaches a final state');

is($node->safe_psql('postgres',
	"SELECT string_agg(status || ' ' || n, ', ') FROM (SELECT status, count(*) n FROM wa_notify.message GROUP BY 1 ORDER BY 1) s"),
	"sent $n_messages", 'every message was sent, none to review');
is($node->safe_psql('postgres', 'SELECT pid FROM wa_notify._worker_shared()'), $pid,
	'the worker was never restarted');
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal/, 'no process was terminated by a signal');
unlike($log, qr/server process .* was terminated|terminating any other active server processes/,
	'the postmaster never reset the server');
$node->stop;
done_testing();

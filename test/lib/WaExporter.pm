# WaExporter: run Debian's prometheus-postgres-exporter against a test node
# with wa_notify's custom queries (contrib/prometheus/wa_notify_queries.yaml)
# and read its /metrics.
#
#   my $exp = WaExporter->start($node, user => 'wa_metrics');   # undef: no binary
#   my $m = $exp->scrape;    # { 'name{label="v",...}' => value } (labels sorted, server= left out)
#   my $m = $exp->wait_for(sub { $_[0]{'wa_notify_worker_running'} }); # polls
package WaExporter;
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Spec;
use HTTP::Tiny;
use IPC::Run;
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

our $BINARY = '/usr/bin/prometheus-postgres-exporter';
our $QUERIES = File::Spec->rel2abs(File::Spec->catfile(dirname(__FILE__), '..', '..',
	'contrib', 'prometheus', 'wa_notify_queries.yaml'));
my @instances;

sub available { return -x $BINARY }

# the exporter on a free loopback port, connected over the node's unix socket
sub start
{
	my ($class, $node, %opt) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $user = $opt{user} // 'postgres';
	my $self = bless { port => $port, log => "$dir/exporter.log" }, $class;
	local $ENV{DATA_SOURCE_NAME} =
	  'host=' . $node->host . ' port=' . $node->port . " dbname=postgres user=$user sslmode=disable";
	$self->{h} = IPC::Run::start([ $BINARY, "--web.listen-address=127.0.0.1:$port",
		"--extend.query-path=$QUERIES", '--disable-settings-metrics', '--log.level=warn' ],
		'<', \undef, '>', "$dir/exporter.out", '2>', $self->{log});
	$self->{http} = HTTP::Tiny->new(keep_alive => 0, timeout => 30);
	push @instances, $self;
	return $self;
}

sub log_text { PostgreSQL::Test::Utils::slurp_file($_[0]{log}) }

# one scrape: { 'name{a="x",b="y"}' => value }; undef when it does not answer
sub scrape
{
	my ($self) = @_;
	my $r = $self->{http}->get("http://127.0.0.1:$self->{port}/metrics");
	return undef unless $r->{success};
	my %m;
	for my $line (split /\n/, $r->{content})
	{
		next if $line =~ /^#/ || $line !~ /\S/;
		my ($name, $labels, $value) = $line =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/ or next;
		my @l = sort(($labels // '') =~ /([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")/g);
		@l = grep { !/^server=/ } @l;    # the exporter's own label: the connection's host:port
		$m{ @l ? "$name\{" . join(',', @l) . '}' : $name } = $value;
	}
	return \%m;
}

# scrape until $cond->($metrics) is true (deadline: the TAP default timeout)
sub wait_for
{
	my ($self, $cond) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	my $m;
	while (time < $deadline)
	{
		$m = $self->scrape;
		return $m if $m && $cond->($m);
		usleep(200_000);
	}
	return $m;
}

sub stop
{
	my ($self) = @_;
	if ($self->{h})
	{
		eval { $self->{h}->kill_kill; };
		$self->{h} = undef;
	}
}

sub DESTROY { $_[0]->stop }
END { local $?; $_->stop for @instances; }

1;

# WaAutoFailover: a pg_auto_failover formation on loopback for TAP tests: a
# monitor and data nodes, each created and run by `pg_autoctl create ...
# --run` (as the test's OS user, postgres), with --auth trust and --no-ssl
# (loopback only).  Nodes are PostgreSQL::Test::Cluster objects (for psql),
# whose server pg_autoctl starts and stops; the first node's data directory
# is made by Cluster::init so that its configuration (wa_notify preloaded)
# reaches the others through pg_basebackup.
#
#   WaAutoFailover::available()          # pg_autoctl and the extension present
#   my $f = WaAutoFailover->new;         # monitor created and running
#   my $a = $f->add_node('a', conf => "..."); $f->wait_state($a, 'single');
#   my $b = $f->add_node('b');  $f->wait_state($b, 'secondary');
#   my $p = $f->primary;                 # the node the monitor says writes
#   my $h = $f->start_failover;  ...  $h->finish;
#   $f->stop;
package WaAutoFailover;
use strict;
use warnings;
use IPC::Run;
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

our $PG_AUTOCTL = '/usr/bin/pg_autoctl';
my @formations;

# pg_autoctl, and the pgautofailover extension in the tested installation
# (scripts/test.sh copies Debian's files into a private prefix)
sub available
{
	my $sharedir = `pg_config --sharedir`;
	chomp $sharedir;
	return -x $PG_AUTOCTL && -f "$sharedir/extension/pgautofailover.control";
}

sub _bindir
{
	my $b = `pg_config --bindir`;
	chomp $b;
	return $b;
}

# pg_autoctl keeps its configuration and state under XDG directories: the
# test's own, so that nothing outside its temporary directory is touched
sub new
{
	my ($class) = @_;
	my $tmp = PostgreSQL::Test::Utils::tempdir();
	mkdir "$tmp/$_" for qw(config data run);
	chmod 0700, "$tmp/run";
	$ENV{XDG_CONFIG_HOME} = "$tmp/config";
	$ENV{XDG_DATA_HOME} = "$tmp/data";
	$ENV{XDG_RUNTIME_DIR} = "$tmp/run";
	my $self = bless { tmp => $tmp, nodes => [], handles => [] }, $class;
	push @formations, $self;
	my $mon = PostgreSQL::Test::Cluster->new('monitor');
	$mon->init;
	_small($mon);
	$self->{monitor} = $mon;
	$self->_run($mon, 'monitor', 'create', 'monitor');
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	until (_answers($mon, 'pg_auto_failover', 'SELECT 1 FROM pgautofailover.formation'))
	{
		die 'pg_auto_failover monitor did not start: ' . $self->log('monitor') if time > $deadline;
		usleep(200_000);
	}
	return $self;
}

sub monitor { $_[0]{monitor} }
sub monitor_uri
{
	my ($self) = @_;
	return 'postgres://autoctl_node@127.0.0.1:' . $self->{monitor}->port . '/pg_auto_failover?sslmode=disable';
}

# pg_autoctl tunes shared_buffers to the machine's memory (GBs); a test node
# needs little (postgresql.auto.conf wins over pg_autoctl's include)
sub _small
{
	my ($node) = @_;
	$node->append_conf('postgresql.auto.conf', "shared_buffers = '16MB'\nmax_connections = 40\n");
	return;
}

sub _answers
{
	my ($node, $db, $sql) = @_;
	my ($ret, $out) = $node->psql($db, $sql);
	return $ret == 0 && $out ne '';
}

sub _run
{
	my ($self, $node, $name, @create) = @_;
	my @cmd = ($PG_AUTOCTL, @create, '--pgdata', $node->data_dir, '--pgport', $node->port,
		'--hostname', '127.0.0.1', '--auth', 'trust', '--no-ssl', '--pgctl', _bindir() . '/pg_ctl');
	push @cmd, '--name', $name, '--monitor', $self->monitor_uri unless $name eq 'monitor';
	push @cmd, '--run';
	my $log = "$self->{tmp}/$name.log";
	my $h = IPC::Run::start(\@cmd, '<', \undef, '>', $log, '2>&1');
	push @{ $self->{handles} }, { h => $h, name => $name };
	return;
}

sub log { PostgreSQL::Test::Utils::slurp_file("$_[0]{tmp}/$_[1].log") }

# A data node.  The first one gets a data directory of its own with $conf
# (and trust for the loopback, where the relay and the replicas connect);
# the others are cloned from the primary by pg_autoctl.
sub add_node
{
	my ($self, $name, %opt) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	if (!@{ $self->{nodes} })
	{
		$node->init(allows_streaming => 1);
		$node->append_conf('postgresql.conf', $opt{conf} // '');
		# pg_autoctl's include sets shared_preload_libraries = pg_stat_statements
		$node->append_conf('postgresql.auto.conf', $opt{auto_conf} // '');
		_small($node);
		$node->append_conf('pg_hba.conf', "host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n");
	}
	push @{ $self->{nodes} }, $node;
	$self->_run($node, $name, 'create', 'postgres');
	return $node;
}

sub nodes { @{ $_[0]{nodes} } }

# the monitor's view: port => [reported, goal]
sub states
{
	my ($self) = @_;
	my ($ret, $out) = $self->{monitor}->psql('pg_auto_failover',
		'SELECT nodeport, reportedstate, goalstate FROM pgautofailover.node ORDER BY nodeport');
	my %st;
	return \%st if $ret != 0;
	for (split /\n/, $out)
	{
		my ($port, $rep, $goal) = split /\|/;
		$st{$port} = [ $rep, $goal ];
	}
	return \%st;
}

# wait until the monitor reports $node in one of @want (and assigned it)
sub wait_state
{
	my ($self, $node, @want) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (time < $deadline)
	{
		my $st = $self->states->{ $node->port };
		return 1 if $st && $st->[0] eq $st->[1] && grep { $_ eq $st->[0] } @want;
		usleep(200_000);
	}
	return 0;
}

# the node the monitor has as the writable one (undef: none right now)
sub primary
{
	my ($self) = @_;
	my $st = $self->states;
	for my $n (@{ $self->{nodes} })
	{
		my $s = $st->{ $n->port } or next;
		return $n if $s->[0] eq $s->[1] && $s->[0] =~ /^(single|primary|wait_primary)$/;
	}
	return undef;
}

# `pg_autoctl perform failover` in the background (it waits for the new primary)
sub start_failover
{
	my ($self) = @_;
	my $out = '';
	return IPC::Run::start([ $PG_AUTOCTL, 'perform', 'failover', '--pgdata', $self->{monitor}->data_dir ],
		'<', \undef, '>&', \$out);
}

sub postmaster_pid
{
	my ($self, $node) = @_;
	open(my $fh, '<', $node->data_dir . '/postmaster.pid') or return undef;
	my $pid = <$fh>;
	close $fh;
	chomp $pid;
	return $pid;
}

# stop every pg_autoctl (each stops its Postgres), data nodes first
sub stop
{
	my ($self) = @_;
	for my $e (reverse @{ $self->{handles} })
	{
		next unless $e->{h};
		eval { $e->{h}->kill_kill(grace => 15); };    # TERM, then KILL after 15 s
		$e->{h} = undef;
	}
	# a server left behind (pg_autoctl killed first)
	for my $n (@{ $self->{nodes} }, $self->{monitor})
	{
		next unless $n && -f $n->data_dir . '/postmaster.pid';
		system(_bindir() . '/pg_ctl', '-D', $n->data_dir, '-m', 'immediate', 'stop');
	}
	return;
}

END { local $?; $_->stop for @formations; }

1;

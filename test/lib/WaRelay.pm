# WaRelay: run wa_notify_relay against a test node and talk to it, politely
# (curl) or as an attacker would (many raw sockets from loopback addresses).
#
#   BEGIN { WaRelay::need_open_files(2048); }  # re-exec under a higher ulimit -n
#   WaRelay::setup_role($node, $secret, $token);   # role wa_webhook + settings
#   WaRelay::create_role($node);                   # the role only (idempotent)
#   my ($code, $body) = $relay->handshake($verify_token, '1158201444');
#   my $relay = WaRelay->start($node, request_timeout => 4, ...);  # config keys
#   my $relay = WaRelay->start($node, cli => ['--path', '/x'], cli_path => '/x');
#   my $relay = WaRelay->start($node, conninfo => 'host=a,b port=1,2 ... target_session_attrs=read-write');
#   my ($code, $body) = $relay->http(url => $relay->base . '/healthz');
#   ($code) = $relay->post_signed(WaRelay::status_payload('wamid.X', 'delivered', 1700000000), $secret);
#   my %st = $relay->proc_status;            # /proc/PID/status: VmRSS, VmHWM (kB)
#   my @codes = $relay->uploads(100, 3_000_000, headers => [...]);  # concurrent
#   my $held = $relay->hold(count => 1100, from => 2);  # open, incomplete requests
package WaRelay;
use strict;
use warnings;
use Digest::SHA qw(hmac_sha256_hex);
use Errno qw(EAGAIN EINPROGRESS EWOULDBLOCK);
use IO::Select;
use IO::Socket::INET;
use IPC::Run;
use POSIX ();
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

# The test process needs a file descriptor per client socket: raise the soft
# limit by re-running the test under "ulimit -n".  Call it from a BEGIN block:
# PostgreSQL::Test::Utils redirects the output at INIT, after which a re-run
# would lose its TAP.
sub need_open_files
{
	my ($n) = @_;
	return if POSIX::sysconf(POSIX::_SC_OPEN_MAX()) >= $n;
	die "cannot raise the open-file limit to $n" if $ENV{WA_RELAY_NOFILE_RAISED};
	$ENV{WA_RELAY_NOFILE_RAISED} = 1;
	exec('/bin/sh', '-c', "ulimit -n $n && exec \"\$\@\"", 'sh', $^X, (map { "-I$_" } grep { !ref } @INC),
		$0, @ARGV)
	  or die "exec: $!";
}

# the relay's least-privileged role, and the secrets webhooks are checked with
sub setup_role
{
	my ($node, $secret, $token) = @_;
	create_role($node);
	$node->safe_psql('postgres', qq{
UPDATE wa_notify.setting SET value = '$secret' WHERE name = 'app_secret';
UPDATE wa_notify.setting SET value = '$token' WHERE name = 'webhook_verify_token';
});
	return;
}

# Meta's payload for one status (bytes: UTF-8)
# the role wa_webhook as doc/roles.md sets it up (idempotent)
sub create_role
{
	my ($node, $db) = @_;
	$node->safe_psql($db // 'postgres', q{
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'wa_webhook') THEN
        CREATE ROLE wa_webhook LOGIN;
    END IF;
END $$;
GRANT USAGE ON SCHEMA wa_notify TO wa_webhook;
GRANT EXECUTE ON FUNCTION wa_notify.webhook_verify(text, text, text),
                          wa_notify.webhook_receive(bytea, text) TO wa_webhook;
});
	return;
}

sub status_payload
{
	my ($wamid, $status, $ts, $extra) = @_;
	$extra //= '';
	return qq({"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"statuses":[{"id":"$wamid","status":"$status","timestamp":"$ts","recipient_id":"5511987654321","conversation":{"id":"c1","origin":{"type":"utility"}},"pricing":{"billable":true,"pricing_model":"PMP","category":"utility"}$extra}]},"field":"messages"}]}]});
}

sub signature
{
	my ($body, $secret) = @_;
	return 'sha256=' . hmac_sha256_hex($body, $secret);
}

# start a relay for $node with these config keys (path /hook, user wa_webhook)
sub start
{
	my ($class, $node, %conf) = @_;
	my $tmp = PostgreSQL::Test::Utils::tempdir();
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $self = bless { tmp => $tmp, port => $port, path => '/hook', log => "$tmp/relay.log" }, $class;
	my $user = delete $conf{user} // 'wa_webhook';
	my @cli = @{ delete $conf{cli} // [] };    # command-line options (they win)
	$self->{path} = delete $conf{cli_path} if exists $conf{cli_path};
	open(my $cf, '>', "$tmp/relay.conf") or die;
	print $cf "# wa_notify_relay test configuration\nlisten = 127.0.0.1:$port\npath = /hook\n";
	# conninfo => '...': another libpq connection string (e.g. several hosts)
	my $conninfo = delete $conf{conninfo}
	  // "host=@{[$node->host]} port=@{[$node->port]} dbname=postgres user=$user";
	print $cf "conninfo = $conninfo\n";
	print $cf "$_ = $conf{$_}\n" for sort keys %conf;
	close($cf);
	$self->{h} = IPC::Run::start([ 'wa_notify_relay', '--config', "$tmp/relay.conf", @cli ],
		'<', \undef, '>', "$tmp/relay.out", '2>', $self->{log});
	$self->{pid} = $self->{h}{KIDS}[0]{PID};
	die 'relay did not answer /healthz' unless $self->wait_health('200');
	return $self;
}

sub base { 'http://127.0.0.1:' . $_[0]{port} }
sub url { $_[0]->base . $_[0]{path} }
sub pid { $_[0]{pid} }
sub port { $_[0]{port} }
sub logfile { $_[0]{log} }
sub log_text { PostgreSQL::Test::Utils::slurp_file($_[0]{log}) }

sub stop
{
	my ($self) = @_;
	$self->{h}->signal('TERM');
	return $self->{h}->finish;
}

# curl: returns (http code, response body); max_time in s (default 30)
sub http
{
	my ($self, %a) = @_;
	my $tmp = $self->{tmp};
	my @cmd = ('curl', '-s', '-S', '--max-time', $a{max_time} // 30, '-o', "$tmp/resp", '-w',
		'%{http_code}', '-X', $a{method} // 'GET');
	if (defined $a{body})
	{
		open(my $fh, '>:raw', "$tmp/req") or die;
		print $fh $a{body};
		close($fh);
		push @cmd, '--data-binary', "\@$tmp/req", '-H', 'Content-Type: application/json';
	}
	push @cmd, '-H', $_ for @{ $a{headers} // [] };
	push @cmd, $a{url};
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	open(my $rf, '<:raw', "$tmp/resp") or return ($out, '');
	local $/;
	my $resp = <$rf> // '';
	close($rf);
	unlink("$tmp/resp");
	return ($out, $resp);
}

# Meta's GET handshake: (http code, body)
sub handshake
{
	my ($self, $token, $challenge) = @_;
	return $self->http(url => $self->url . "?hub.mode=subscribe&hub.verify_token=$token&hub.challenge=$challenge");
}

sub post_signed
{
	my ($self, $body, $secret, %a) = @_;
	return $self->http(%a, method => 'POST', url => $self->url, body => $body,
		headers => [ 'X-Hub-Signature-256: ' . signature($body, $secret), @{ $a{headers} // [] } ]);
}

# poll the relay's log for a pattern (deadline: the TAP default timeout)
sub wait_log
{
	my ($self, $re) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		return 1 if $self->log_text =~ $re;
		usleep(100_000);
	}
	return 0;
}

# poll /healthz until it answers $want (deadline: the TAP default timeout)
sub wait_health
{
	my ($self, $want, $url) = @_;
	$url //= $self->base . '/healthz';
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		my ($code) = $self->http(url => $url, max_time => 5);
		return 1 if $code eq $want;
		usleep(100_000);
	}
	return 0;
}

# the relay's /proc/PID/status as name => value (kB figures as numbers)
sub proc_status
{
	my ($self) = @_;
	my %st;
	open(my $fh, '<', "/proc/$self->{pid}/status") or die "relay status: $!";
	while (<$fh>)
	{
		$st{$1} = $2 if /^(\w+):\s+(\d+)/;
	}
	close($fh);
	return %st;
}

# a blocking connect from a given loopback address, then non-blocking
sub _connect
{
	my ($self, $from) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{port},
		LocalAddr => $from, Proto => 'tcp')
	  or die "connect from $from: $!";
	$s->blocking(0);
	return $s;
}

# Send everything in $$buf it takes now; false when the peer is gone.
sub _push
{
	my ($s, $buf) = @_;
	while (length $$buf)
	{
		my $n = syswrite($s, $$buf, 65536);
		if (!defined $n)
		{
			return 1 if $! == EAGAIN || $! == EWOULDBLOCK;
			return 0;
		}
		substr($$buf, 0, $n, '');
	}
	return 1;
}

# $n concurrent POSTs of $size bytes each (Expect: 100-continue, as curl
# sends for big bodies): the body goes only after "100 Continue".  Returns
# the final status codes ('000': closed without an answer).
sub uploads
{
	my ($self, $n, $size, %a) = @_;
	my $body = 'x' x $size;
	my (%c, @codes);
	my $sel = IO::Select->new;
	for my $i (1 .. $n)
	{
		# from 127.0.2.1 onwards, 25 per address: under any per-IP limit
		my $s = $self->_connect(sprintf('127.0.2.%d', 1 + int(($i - 1) / 25)));
		my $head = "POST $self->{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
		  . "Content-Length: $size\r\nExpect: 100-continue\r\n"
		  . join('', map { "$_\r\n" } @{ $a{headers} // [] }) . "\r\n";
		$c{$s} = { s => $s, out => $head, in => '', sending_body => 0 };
		$sel->add($s);
	}
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while ($sel->count && time() < $deadline)
	{
		for my $st (values %c)
		{
			_push($st->{s}, \$st->{out}) if length $st->{out};
		}
		my @ready = $sel->can_read(0.05);
		for my $s (@ready)
		{
			my $st = $c{$s};
			my $got = sysread($s, my $chunk, 65536);
			next if !defined $got && ($! == EAGAIN || $! == EWOULDBLOCK);
			$st->{in} .= $chunk if $got;
			if ($st->{in} =~ s{\AHTTP/1\.1 100[^\r\n]*\r\n\r\n}{})
			{
				$st->{out} .= $body;
			}
			if ($st->{in} =~ m{\AHTTP/1\.[01] (\d{3})})
			{
				push @codes, $1;
			}
			elsif ($got)
			{
				next;
			}
			else
			{
				push @codes, '000';
			}
			$sel->remove($s);
			close($s);
			delete $c{$s};
		}
	}
	push @codes, ('000') x $sel->count;
	close($_->{s}) for values %c;
	return @codes;
}

# Open $count connections from 127.0.0.$from onwards ($per_addr from each
# address), each sending $prefix and no more.  Returns a handle for trickle().
sub hold
{
	my ($self, %a) = @_;
	my $per = $a{per_addr} // 50;
	my @socks;
	for my $i (0 .. $a{count} - 1)
	{
		my $addr = sprintf('127.0.%d.%d', $a{net} // 0, ($a{from} // 2) + int($i / $per));
		my $s = $self->_connect($addr);
		my $out = $a{prefix} // '';
		_push($s, \$out);
		push @socks, $s;
	}
	return { socks => \@socks, open => { map { ($_ => $_) } @socks }, closed => 0 };
}

# Of the held connections, which has the relay closed now (EOF or reset)?
# With $byte, each still-open one first sends it (a trickle).  Returns how
# many are still open.
sub poll_held
{
	my ($held, $byte, $wait) = @_;
	for my $s (values %{ $held->{open} })
	{
		if (defined $byte)
		{
			my $b = $byte;
			_push($s, \$b);
		}
	}
	my $sel = IO::Select->new(values %{ $held->{open} });
	for my $s ($sel->can_read($wait // 0))
	{
		my $got = sysread($s, my $chunk, 4096);
		next if !defined $got && ($! == EAGAIN || $! == EWOULDBLOCK);
		next if $got;    # an answer (408?) before the close: keep reading
		delete $held->{open}{$s};
		close($s);
		$held->{closed}++;
	}
	return scalar keys %{ $held->{open} };
}

sub release
{
	my ($held) = @_;
	close($_) for values %{ $held->{open} };
	$held->{open} = {};
	return;
}

1;

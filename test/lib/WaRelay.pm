# WaRelay: run wa_notify_relay against a test node and talk to it.
#
#   my $relay = WaRelay->start($node, role => 'wa_webhook', db => 'postgres');
#   my ($code, $body) = $relay->post_signed($json, $app_secret);
#   my ($code, $body) = $relay->get("/healthz");
package WaRelay;
use strict;
use warnings;
use Digest::SHA qw(hmac_sha256_hex);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(usleep time);

sub start
{
	my ($class, $node, %a) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $self = bless { dir => $dir, base => "http://127.0.0.1:$port", path => $a{path} // '/webhook' }, $class;
	open(my $cf, '>', "$dir/relay.conf") or die;
	print $cf "listen = 127.0.0.1:$port\npath = $self->{path}\n",
	  'conninfo = host=', $node->host, ' port=', $node->port, ' dbname=', $a{db} // 'postgres',
	  ' user=', $a{role} // 'wa_webhook', "\n", $a{conf} // '';
	close $cf;
	$self->{h} = IPC::Run::start([ 'wa_notify_relay', '--config', "$dir/relay.conf" ],
		'<', \undef, '>', "$dir/relay.out", '2>', "$dir/relay.log");
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	until (($self->get('/healthz'))[0] eq '200')
	{
		die "wa_notify_relay did not become healthy" if time > $deadline;
		usleep(50_000);
	}
	return $self;
}

sub log_file { "$_[0]{dir}/relay.log" }

# curl: (http code, response body)
sub request
{
	my ($self, %a) = @_;
	my $resp = "$self->{dir}/resp";
	my @cmd = ('curl', '-s', '-S', '--max-time', '60', '-o', $resp, '-w', '%{http_code}',
		'-X', $a{method} // 'GET');
	if (defined $a{body})
	{
		open(my $fh, '>:raw', "$self->{dir}/req") or die;
		print $fh $a{body};
		close $fh;
		push @cmd, '--data-binary', "\@$self->{dir}/req", '-H', 'Content-Type: application/json';
	}
	push @cmd, '-H', $_ for @{ $a{headers} // [] };
	push @cmd, $self->{base} . ($a{path} // $self->{path});
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	my $body = -e $resp ? PostgreSQL::Test::Utils::slurp_file($resp) : '';
	unlink $resp;
	return ($out, $body);
}

sub get { my ($self, $path) = @_; return $self->request(path => $path) }

# POST a body signed as Meta signs it (X-Hub-Signature-256 over the raw bytes)
sub post_signed
{
	my ($self, $body, $secret) = @_;
	return $self->request(method => 'POST', body => $body,
		headers => [ 'X-Hub-Signature-256: sha256=' . hmac_sha256_hex($body, $secret) ]);
}

sub stop
{
	my ($self) = @_;
	return unless $self->{h};
	$self->{h}->signal('TERM');
	eval { $self->{h}->finish; };
	$self->{h} = undef;
}

sub DESTROY { $_[0]->stop }

1;

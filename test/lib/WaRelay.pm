# WaRelay: start the webhook relay (wa_notify_relay, installed on PATH) in
# front of a node, as a role that may call the two webhook functions only,
# and talk HTTP to it with curl.
#
#   my $relay = WaRelay->start($node);                 # creates role wa_webhook
#   my ($code, $body) = $relay->handshake($verify_token, '1158201444');
#   my ($code, $body) = $relay->post_signed($json, $app_secret);
package WaRelay;
use strict;
use warnings;
use Digest::SHA qw(hmac_sha256_hex);
use IPC::Run;
use Time::HiRes qw(time usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

sub start
{
	my ($class, $node, %opt) = @_;
	my $db = $opt{database} // 'postgres';
	$node->safe_psql($db, q{
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'wa_webhook') THEN
        CREATE ROLE wa_webhook LOGIN;
    END IF;
END $$;
GRANT USAGE ON SCHEMA wa_notify TO wa_webhook;
GRANT EXECUTE ON FUNCTION wa_notify.webhook_verify(text, text, text),
                          wa_notify.webhook_receive(bytea, text) TO wa_webhook;
});
	my $tmp = PostgreSQL::Test::Utils::tempdir();
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $self = bless { tmp => $tmp, base => "http://127.0.0.1:$port", path => '/webhook' }, $class;
	open(my $cf, '>', "$tmp/relay.conf") or die;
	print $cf "listen = 127.0.0.1:$port\npath = /webhook\n"
	  . "conninfo = host=@{[$node->host]} port=@{[$node->port]} dbname=$db user=wa_webhook\n";
	close($cf);
	$self->{h} = IPC::Run::start([ 'wa_notify_relay', '--config', "$tmp/relay.conf" ],
		'<', \undef, '>', "$tmp/relay.out", '2>', "$tmp/relay.log");
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		my ($code) = $self->http(url => "$self->{base}/healthz");
		return $self if $code eq '200';
		usleep(50_000);
	}
	die "the relay did not answer /healthz";
}

# curl: (http code, response body)
sub http
{
	my ($self, %a) = @_;
	my $tmp = $self->{tmp};
	my @cmd = ('curl', '-s', '-S', '--max-time', '30', '-o', "$tmp/resp", '-w', '%{http_code}',
		'-X', $a{method} // 'GET');
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

sub handshake
{
	my ($self, $token, $challenge) = @_;
	return $self->http(url => "$self->{base}$self->{path}?hub.mode=subscribe"
		  . "&hub.verify_token=$token&hub.challenge=$challenge");
}

sub post_signed
{
	my ($self, $body, $secret) = @_;
	my $sig = 'sha256=' . hmac_sha256_hex($body, $secret);
	return $self->http(method => 'POST', url => "$self->{base}$self->{path}", body => $body,
		headers => ["X-Hub-Signature-256: $sig"]);
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

1;

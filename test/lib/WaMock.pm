# WaMock: start and drive the mock Graph API (test/mock/graph_mock.py) from
# TAP tests, and set up a node whose wa_notify worker talks to it.
#
#   my $mock = WaMock->new;                      # listens on 127.0.0.1
#   my $node = WaMock::setup_node('name', $mock, %settings);   # request_timeout => s (default 2)
#   $mock->control({rules => {'5511...' => {code => 131026}}});
#   my $reqs = $mock->wait_posts(3);             # polls with a deadline
package WaMock;
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Spec;
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use Digest::SHA qw(hmac_sha256_hex);
use Time::HiRes qw(time usleep);
use Test::More;
use PostgreSQL::Test::Cluster;
use WaNode;
use PostgreSQL::Test::Utils;

my $mock_script = File::Spec->rel2abs(
	File::Spec->catfile(dirname(__FILE__), '..', 'mock', 'graph_mock.py'));

our $TOKEN = 'EAAtest-secret-token-0123456789';
our $PNID = '106540352242922';
our $WABA = '102290129340398';
my @instances;

sub new
{
	my ($class) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir();
	my $self = bless { log => "$dir/requests.jsonl", portfile => "$dir/port", seen => 0 }, $class;
	$self->{h} = IPC::Run::start(['/usr/bin/python3', $mock_script, '--log', $self->{log},
		'--port-file', $self->{portfile}], '>', "$dir/mock.out", '2>', "$dir/mock.err");
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (!-s $self->{portfile})
	{
		die "mock Graph API did not start" if time > $deadline;
		usleep(20_000);
	}
	open(my $fh, '<', $self->{portfile}) or die;
	chomp($self->{port} = <$fh>);
	close $fh;
	$self->{http} = HTTP::Tiny->new(keep_alive => 0);
	$self->{pid} = $self->{h}{KIDS}[0]{PID};
	push @instances, $self;
	return $self;
}

sub port { $_[0]{port} }
sub base_url { 'http://127.0.0.1:' . $_[0]{port} }

sub control
{
	my ($self, $cfg) = @_;
	my $r = $self->{http}->post($self->base_url . '/_control',
		{ content => encode_json($cfg), headers => { 'Content-Type' => 'application/json' } });
	die "mock control failed: $r->{status}" unless $r->{success};
	return;
}

# every request recorded so far (optionally only POST /messages)
sub requests
{
	my ($self, $posts_only) = @_;
	my @r;
	if (open(my $fh, '<', $self->{log}))
	{
		while (my $l = <$fh>)
		{
			next unless $l =~ /\n\z/;
			my $o = decode_json($l);
			next if $posts_only && !($o->{method} eq 'POST' && $o->{path} =~ m{/messages\z});
			$o->{json} = eval { JSON::PP->new->decode($o->{body}) } if $o->{method} eq 'POST';
			push @r, $o;
		}
		close $fh;
	}
	return \@r;
}

sub posts { return $_[0]->requests(1) }

# wait until at least $n POSTs were recorded; returns them all
sub wait_posts
{
	my ($self, $n) = @_;
	my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
	while (1)
	{
		my $p = $self->posts;
		return $p if @$p >= $n;
		if (time > $deadline)
		{
			diag("timed out waiting for $n POSTs, got " . scalar(@$p));
			return $p;
		}
		usleep(20_000);
	}
}

# the POSTs sent to one phone
sub posts_to
{
	my ($self, $phone) = @_;
	return [ grep { ($_->{json}{to} // '') eq $phone } @{ $self->posts } ];
}

sub stop
{
	my ($self) = @_;
	kill 'KILL', $self->{pid} if $self->{pid};
	$self->{pid} = undef;
	if ($self->{h})
	{
		eval { $self->{h}->kill_kill; };
		$self->{h} = undef;
	}
}

sub DESTROY { $_[0]->stop }

# never leave a mock behind, whatever way the test ends
END { local $?; $_->stop for @instances; }

# A node with the extension in "postgres", its worker aimed at the mock.
# Fast defaults: no delays, no rate cap, no recipient gap.
sub setup_node
{
	my ($name, $mock, %set) = @_;
	my $request_timeout = delete $set{request_timeout} // 2;
	my $node = WaNode::preloaded($name, allows_streaming => delete $set{allows_streaming},
		conf => (delete($set{conf}) // '') . "\nwa_notify.request_timeout = $request_timeout\n");
	$node->safe_psql('postgres', 'CREATE EXTENSION wa_notify');
	configure($node, access_token => $TOKEN, phone_number_id => $PNID,
		business_account_id => $WABA, api_base_url => $mock->base_url,
		min_delay => 0, max_delay => 0, max_rate => 0, recipient_gap => 0,
		max_per_batch => 100000, %set);
	return $node;
}

# set settings the way configure() does (its table), waking the worker
sub configure
{
	my ($node, %set) = @_;
	return configure_in($node, 'postgres', %set);
}

# the same in another database of the cluster
sub configure_in
{
	my ($node, $db, %set) = @_;
	my @sql;
	for my $k (sort keys %set)
	{
		my $v = defined $set{$k} ? "'" . $set{$k} . "'" : 'NULL';
		# secrets never appear in a statement (the log must stay clean)
		$v = "convert_from('\\x" . unpack('H*', $set{$k}) . "'::bytea, 'UTF8')"
		  if defined $set{$k} && $k =~ /token|secret/;
		push @sql, "UPDATE wa_notify.setting SET value = $v, updated_at = clock_timestamp() WHERE name = '$k';";
	}
	$node->safe_psql($db, join("\n", 'BEGIN;', @sql,
		'UPDATE wa_notify.state SET paused_reason = NULL, paused_code = NULL, paused_at = NULL;',
		'COMMIT;'));
	return;
}

# add or change a sender with configure_sender() (secrets hex-encoded, as
# configure() above keeps them out of the statement's text)
sub configure_sender
{
	my ($node, $sender, %set) = @_;
	my @args = ("'$sender'");
	for my $k (sort keys %set)
	{
		my $v = !defined $set{$k} ? 'NULL'
		  : $k =~ /token|secret/ ? "convert_from('\\x" . unpack('H*', $set{$k}) . "'::bytea, 'UTF8')"
		  : $set{$k} =~ /^(true|false|[0-9.]+)$/ && $k ne 'phone_number_id' && $k ne 'business_account_id' ? $set{$k}
		  : "'$set{$k}'";
		push @args, "$k => $v";
	}
	return $node->safe_psql('postgres', 'SELECT wa_notify.configure_sender(' . join(', ', @args) . ')');
}

# the POSTs sent to one phone number ID (one sender)
sub posts_of
{
	my ($self, $pnid) = @_;
	return [ grep { $_->{path} =~ m{^/[^/]+/\Q$pnid\E/messages\z} } @{ $self->posts } ];
}

# queue a message by hand; returns its id
sub enqueue
{
	my ($node, @args) = @_;
	return enqueue_in($node, 'postgres', @args);
}

# the same in another database of the cluster (a sender's name: optional)
sub enqueue_in
{
	my ($node, $db, $event, $order, $phone, $params, $sender) = @_;
	$params //= { customer_name => 'Ana', order_number => $order, total => '10,00' };
	my $j = encode_json($params);
	$j =~ s/'/''/g;
	my ($col, $val) = defined $sender ? (', sender', ", '$sender'") : ('', '');
	return $node->safe_psql($db,
		"INSERT INTO wa_notify.message (event, order_key, phone, params$col) "
		  . "VALUES ('$event', '$order', '$phone', '$j'$val) RETURNING id");
}

# wait until the message is in one of the given statuses; returns the row
sub wait_status
{
	my ($node, $id, @st) = @_;
	my $in = join(',', map { "'$_'" } @st);
	ok($node->poll_query_until('postgres',
		"SELECT status IN ($in) FROM wa_notify.message WHERE id = $id"),
		"message $id reaches " . join('/', @st))
	  or diag($node->safe_psql('postgres', "SELECT * FROM wa_notify.message WHERE id = $id"));
	return;
}

# Post a signed "failed" status for a message straight to
# wa_notify.webhook_receive() (as Meta sends it, errors[0] = {code, title,
# message, error_data.details}); the app secret is set here.  Returns the
# function's counts as text.
our $APP_SECRET = 'test-app-secret-for-webhooks';
sub webhook_failed
{
	my ($node, $wamid, $recipient, $code) = @_;
	return _webhook($node, { id => $wamid, status => 'failed', timestamp => '1700000000',
		recipient_id => $recipient,
		errors => [ { code => $code + 0, title => "Title $code", message => "Message $code",
			error_data => { details => "Details $code." } } ] });
}

# Post a signed status (sent, delivered, read) for a message, with the
# biz_opaque_callback_data the request carried (undef: none), the way Meta
# sends it ("Status messages webhook reference",
# https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/status/).
sub webhook_status
{
	my ($node, $wamid, $recipient, $status, $callback_data) = @_;
	my %st = (id => $wamid, status => $status, timestamp => '1700000000', recipient_id => $recipient);
	$st{biz_opaque_callback_data} = $callback_data if defined $callback_data;
	return _webhook($node, \%st);
}

sub _webhook
{
	my ($node, $status) = @_;
	my $body = encode_json({
		object => 'whatsapp_business_account',
		entry => [ { id => $WABA, changes => [ { field => 'messages', value => {
			messaging_product => 'whatsapp',
			metadata => { display_phone_number => '15550783881', phone_number_id => $PNID },
			statuses => [ $status ] } } ] } ] });
	my $sig = 'sha256=' . hmac_sha256_hex($body, $APP_SECRET);
	$node->safe_psql('postgres',
		"UPDATE wa_notify.setting SET value = '$APP_SECRET' WHERE name = 'app_secret' AND value IS DISTINCT FROM '$APP_SECRET'");
	return $node->safe_psql('postgres',
		"SELECT wa_notify.webhook_receive('\\x" . unpack('H*', $body) . "'::bytea, '$sig')");
}

1;

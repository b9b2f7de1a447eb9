# Settings changed with configure() while the worker runs apply to its next
# requests, without a restart: default_language and use_templates (the
# rendered body), enabled (nothing is claimed while off), max_per_batch (the
# cap moves at once, both ways), min_delay/max_delay (the pacing of the next
# sends).  The worker reads them from its typed snapshot (src/settings.c),
# loaded again in each of its transactions.
use strict;
use warnings;
use utf8;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaMock;

my $mock = WaMock->new;
# one batch window for the whole test: the per-batch cap counts every claim
my $node = WaMock::setup_node('settings_live', $mock, polling_interval => 3600);

sub sql { $node->safe_psql('postgres', $_[0]) }

sub configure { sql("SELECT wa_notify.configure($_[0])") }

# the message's id with its MAC (secrets.c), as the worker sends it
sub callback_data { $node->safe_psql('postgres', "SELECT wa_notify._callback_data($_[0])") }

sub params { { customer_name => 'Ana', order_number => $_[0], total => '10,00' } }

sub template_body
{
	my ($id, $phone, $order, $lang) = @_;
	return {
		messaging_product => 'whatsapp', recipient_type => 'individual', to => $phone,
		type => 'template',
		template => { name => 'order_confirmation', language => { code => $lang },
			components => [ { type => 'body', parameters => [
				{ type => 'text', text => 'Ana' }, { type => 'text', text => $order },
				{ type => 'text', text => '10,00' } ] } ] },
		biz_opaque_callback_data => callback_data($id) };
}

sub send_one
{
	my ($order, $phone) = @_;
	my $id = WaMock::enqueue($node, 'order_placed', $order, $phone, params($order));
	WaMock::wait_status($node, $id, 'sent');
	my $p = $mock->posts_to($phone);
	is(scalar @$p, 1, "$order: one POST");
	return ($id, $p->[0]{json});
}

# --- default_language: the next template carries the new language ---------
my ($id, $body) = send_one('S1', '5511900000001');
is_deeply($body, template_body($id, '5511900000001', 'S1', 'pt_BR'), 'S1: default language pt_BR');
configure("default_language => 'es_AR'");
($id, $body) = send_one('S2', '5511900000002');
is_deeply($body, template_body($id, '5511900000002', 'S2', 'es_AR'),
	'S2, after configure(default_language => es_AR): language es_AR');

# --- use_templates off: the next message is the event's text body ----------
configure('use_templates => false');
($id, $body) = send_one('S3', '5511900000003');
is_deeply($body, {
	messaging_product => 'whatsapp', recipient_type => 'individual', to => '5511900000003',
	type => 'text',
	text => { preview_url => JSON::PP::true,
		body => 'Olá Ana! Recebemos seu pedido #S3 no valor de R$ 10,00. Obrigado pela compra!' },
	biz_opaque_callback_data => callback_data($id) }, 'S3, after configure(use_templates => false): text body');
configure('use_templates => true');
($id, $body) = send_one('S3b', '5511900000033');
is($body->{type}, 'template', 'S3b, after configure(use_templates => true): a template again');

# --- enabled off: nothing is claimed until it is on again ------------------
configure('enabled => false');
my $posts = scalar @{ $mock->posts };
my $off = WaMock::enqueue($node, 'order_placed', 'S4', '5511900000004', params('S4'));
ok($node->poll_query_until('postgres',
	"SELECT worker_activity = 'paused: master switch off (enabled = false)' FROM wa_notify.state"),
	'the worker reports the master switch off');
is(sql("SELECT status FROM wa_notify.message WHERE id = $off"), 'queued', 'S4 waits while enabled is off');
configure('enabled => true');
WaMock::wait_status($node, $off, 'sent');
is(scalar @{ $mock->posts }, $posts + 1, 'S4 is the only POST since the switch went off');
is(sql("SELECT m.claimed_at >= s.updated_at FROM wa_notify.message m, wa_notify.setting s "
	. "WHERE m.id = $off AND s.name = 'enabled'"), 't', 'S4 was claimed after enabled went back on');

# --- max_per_batch: lowered, the cap holds the rest; raised, they go -------
my $claimed = sql("SELECT count(*) FROM wa_notify.message WHERE claimed_at IS NOT NULL");
configure('max_per_batch => ' . ($claimed + 2));
$posts = scalar @{ $mock->posts };
my @capped = map { WaMock::enqueue($node, 'order_placed', "S5$_", "551190000005$_", params("S5$_")) } 1 .. 4;
my $in = join(',', @capped);
ok($node->poll_query_until('postgres',
	"SELECT worker_activity LIKE 'batch cap reached%' FROM wa_notify.state"),
	'the worker reports the lowered batch cap');
is(sql("SELECT count(*) FILTER (WHERE status = 'sent') || '/' || count(*) FILTER (WHERE status = 'queued') "
	. "FROM wa_notify.message WHERE id IN ($in)"), '2/2', 'two of four sent under the new cap, two wait');
is(scalar @{ $mock->posts }, $posts + 2, 'exactly two POSTs under the new cap');
configure('max_per_batch => 100000');
WaMock::wait_status($node, $_, 'sent') for @capped;
is(scalar @{ $mock->posts }, $posts + 4, 'the other two are sent once the cap is raised');
is(sql("SELECT count(*) FROM wa_notify.message m, wa_notify.setting s "
	. "WHERE m.id IN ($in) AND s.name = 'max_per_batch' AND m.claimed_at >= s.updated_at"), '2',
	'the two held back were claimed after the cap was raised');

# --- min_delay / max_delay: the next sends are paced -------------------------
configure('min_delay => 2, max_delay => 2');
my @paced = map { WaMock::enqueue($node, 'order_placed', "S6$_", "551190000006$_", params("S6$_")) } 1 .. 2;
WaMock::wait_status($node, $_, 'sent') for @paced;
# the second claim waits for the first request's start + 2 s (less the
# worker's 0.05 s claim-ahead); the first claim precedes that start
is(sql("SELECT extract(epoch FROM max(claimed_at) - min(claimed_at)) >= 1.9 "
	. "FROM wa_notify.message WHERE id IN (" . join(',', @paced) . ")"), 't',
	'two sends after configure(min_delay => 2, max_delay => 2) are 2 s apart');

done_testing();

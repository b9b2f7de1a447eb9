# The whole chain, as in production: the shop's own role inserts an order
# into its own table -> the capture trigger -> the worker resolves the
# context and sends -> the mock Graph API records the request -> Meta's
# signed status webhooks come back through wa_notify_relay ->
# webhook_receive() -> message_log shows delivered, then read.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaMock;
use WaNode;
use WaRelay;

my $secret = 'e2eAppSecret0123456789abcdef';
my $mock = WaMock->new;
my $node = WaMock::setup_node('e2e', $mock, app_secret => $secret);
$node->safe_psql('postgres', q{
	CREATE ROLE shop_app LOGIN;
	CREATE SCHEMA shop AUTHORIZATION shop_app;
	CREATE ROLE wa_webhook LOGIN;
	GRANT USAGE ON SCHEMA wa_notify TO wa_webhook;
	GRANT EXECUTE ON FUNCTION wa_notify.webhook_verify(text, text, text),
	                          wa_notify.webhook_receive(bytea, text) TO wa_webhook;
	SET ROLE shop_app;
	CREATE TABLE shop.customer (id int PRIMARY KEY, name text, phone text);
	CREATE TABLE shop.orders (id serial PRIMARY KEY, customer_id int REFERENCES shop.customer,
	                          number text, total numeric(10,2));
	INSERT INTO shop.customer VALUES (7, 'Maria', '(11) 98765-4321');
	-- what the context reads, for the role contexts run as (doc/roles.md)
	GRANT USAGE ON SCHEMA shop TO wa_notify_context;
	GRANT SELECT ON shop.customer, shop.orders TO wa_notify_context;
	RESET ROLE;
	SELECT wa_notify.configure_event('order_placed', template_name => 'pedido_confirmado',
	       params => ARRAY['customer_name', 'order_number', 'total']);
	SELECT wa_notify.watch('order_placed', 'shop.orders', 'id',
	  $$SELECT c.phone, c.name AS customer_name, o.number AS order_number, o.total
	      FROM shop.orders o JOIN shop.customer c ON c.id = o.customer_id WHERE o.id = $1::int$$);
});
my $relay = WaRelay->start($node);

# the shop's checkout, as the shop's role
$node->safe_psql('postgres', q{SET ROLE shop_app;
	INSERT INTO shop.orders (customer_id, number, total) VALUES (7, 'BR-1001', 259.90)});
my $posts = $mock->wait_posts(1);
is(scalar @$posts, 1, 'one request at the Graph API');
is($posts->[0]{path}, "/v23.0/$WaMock::PNID/messages", 'POSTed to the number\'s messages edge');
is($posts->[0]{headers}{authorization}, "Bearer $WaMock::TOKEN", 'with the bearer token');
my $t = $posts->[0]{json};
is($t->{to} . ' ' . $t->{template}{name} . ' ' . $t->{template}{language}{code}, '5511987654321 pedido_confirmado pt_BR',
	'the template to the customer\'s E.164 number');
is(join('|', map { $_->{text} } @{ $t->{template}{components}[0]{parameters} }), 'Maria|BR-1001|259,90',
	'body parameters from the context, the total in pt_BR notation');
ok($node->poll_query_until('postgres', q{SELECT status = 'sent' FROM wa_notify.message WHERE order_key = '1'}),
	'the message is sent');
my ($id, $wamid) = split /\|/, $node->safe_psql('postgres',
	q{SELECT id, wamid FROM wa_notify.message WHERE order_key = '1'});
like($wamid, qr/^wamid\.MOCK/, 'the wamid from the response is stored');

# Meta's status webhook, shaped as in the Status messages webhook reference
# (developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/status/)
sub status
{
	my ($st, $ts) = @_;
	return qq({"object":"whatsapp_business_account","entry":[{"id":"$WaMock::WABA","changes":[{"value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"551140000000","phone_number_id":"$WaMock::PNID"},"statuses":[{"id":"$wamid","status":"$st","timestamp":"$ts","recipient_id":"5511987654321","biz_opaque_callback_data":"$id","pricing":{"billable":true,"pricing_model":"PMP","category":"utility","type":"regular"}}]},"field":"messages"}]}]});
}
my ($code) = $relay->post_signed(status('delivered', '1764600000'), $secret);
is($code, '200', 'delivered: the relay answers 200');
is($node->safe_psql('postgres', q{SELECT status FROM wa_notify.message_log WHERE order_key = '1'}), 'delivered',
	'message_log shows delivered');
($code) = $relay->post_signed(status('read', '1764600060'), $secret);
is($code, '200', 'read: 200');
($code) = $relay->post_signed(status('delivered', '1764600000'), $secret);
is($code, '200', 'a repeated delivered: 200');
is($node->safe_psql('postgres', q{SELECT status FROM wa_notify.message_log WHERE order_key = '1'}), 'read',
	'message_log shows read: a late repeat does not move it back');
is($node->safe_psql('postgres', q{SELECT delivered || ' ' || read || ' ' || total FROM wa_notify.counts(now() - interval '1 day', now() + interval '1 day')}),
	'1 1 1', 'counts: delivered (read included), read, total');
($code) = $relay->post_signed(status('read', '1764600060'), 'not-the-app-secret');
is($code, '403', 'a webhook signed with another secret: 403 (the relay answers 401 only to a missing signature)');

$relay->stop;
$node->stop;
done_testing();

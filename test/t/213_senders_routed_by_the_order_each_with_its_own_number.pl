# Two stores of one nopCommerce database, two WhatsApp numbers: the context
# maps "Order"."StoreId" to a sender name through a small mapping table, and
# each order's message is POSTed to its own sender's
# /{version}/{phone_number_id}/messages with that sender's bearer token,
# nothing crossing over (Meta's Cloud API "Send messages" reference: POST
# /<WHATSAPP_BUSINESS_PHONE_NUMBER_ID>/messages, "Authorization: Bearer
# <ACCESS_TOKEN>").  A context naming an unknown sender fails that message
# only, with an error naming the known senders.  The status card per sender
# (wa_notify.senders) counts each sender's messages.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaMock;

my $mock = WaMock->new;
my $node = WaMock::setup_node('senders_route', $mock);
my $pnid2 = '209876543210987';
my $token2 = 'EAAstore2-other-token-9876543210';
WaMock::configure_sender($node, 'store_2', phone_number_id => $pnid2, access_token => $token2);
# each number accepts only its own token (a wrong one: 401, code 190)
$mock->control({ tokens => { $WaMock::PNID => $WaMock::TOKEN, $pnid2 => $token2 } });

$node->safe_psql('postgres', q{
	CREATE ROLE shop_app LOGIN;
	CREATE SCHEMA shop AUTHORIZATION shop_app;
	SET ROLE shop_app;
	-- nopCommerce's shape: "Order"."StoreId", "Customer"."Phone"
	CREATE TABLE shop."Customer" ("Id" int PRIMARY KEY, "FirstName" text, "Phone" text);
	CREATE TABLE shop."Order" ("Id" serial PRIMARY KEY, "CustomerId" int, "StoreId" int,
	                           "CustomOrderNumber" text, "OrderTotal" numeric(10,2));
	-- the shop's mapping of its stores to wa_notify senders
	CREATE TABLE shop.store_sender ("StoreId" int PRIMARY KEY, sender text);
	INSERT INTO shop.store_sender VALUES (1, 'default'), (2, 'store_2'), (3, 'no_such_store');
	INSERT INTO shop."Customer" VALUES (1, 'Ana', '5511987650001'), (2, 'Bruno', '5511987650002'),
	                                   (3, 'Carla', '5511987650003'), (4, 'Davi', '5511987650004');
	GRANT USAGE ON SCHEMA shop TO wa_notify_context;
	GRANT SELECT ON shop."Customer", shop."Order", shop.store_sender TO wa_notify_context;
	RESET ROLE;
	SELECT wa_notify.watch('order_placed', 'shop."Order"', '"Id"',
	  $$SELECT c."Phone" AS phone, c."FirstName" AS customer_name, o."CustomOrderNumber" AS order_number,
	           o."OrderTotal" AS total, m.sender
	      FROM shop."Order" o JOIN shop."Customer" c ON c."Id" = o."CustomerId"
	      LEFT JOIN shop.store_sender m ON m."StoreId" = o."StoreId"
	     WHERE o."Id" = $1::int$$);
});

# four orders: store 1, store 2, store 2, and a store with no mapping row (NULL: default)
$node->safe_psql('postgres', q{SET ROLE shop_app;
	INSERT INTO shop."Order" ("CustomerId", "StoreId", "CustomOrderNumber", "OrderTotal")
	VALUES (1, 1, 'S1-1', 10), (2, 2, 'S2-1', 20), (3, 2, 'S2-2', 30), (4, 9, 'S9-1', 40)});
my $posts = $mock->wait_posts(4);
is(scalar @$posts, 4, 'four requests at the Graph API');
my %by_phone = map { ($_->{json}{to} => $_) } @$posts;
for my $c (['5511987650001', $WaMock::PNID, $WaMock::TOKEN, 'store 1: default'],
	['5511987650002', $pnid2, $token2, 'store 2: store_2'],
	['5511987650003', $pnid2, $token2, 'store 2: store_2'],
	['5511987650004', $WaMock::PNID, $WaMock::TOKEN, 'unmapped store (NULL sender): default'])
{
	my ($phone, $pnid, $token, $what) = @$c;
	my $p = $by_phone{$phone};
	is($p->{path} . ' ' . $p->{headers}{authorization}, "/v23.0/$pnid/messages Bearer $token",
		"$what: its number's messages edge, its bearer token");
}
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 4 FROM wa_notify.message WHERE status = 'sent'}), 'all four sent');
is($node->safe_psql('postgres',
	q{SELECT string_agg(order_key || ':' || sender, ',' ORDER BY order_key::int) FROM wa_notify.message}),
	'1:default,2:store_2,3:store_2,4:default', 'message.sender says which sender sent each');

# an unknown sender fails that message only; the next order of store 2 still goes out
$node->safe_psql('postgres', q{SET ROLE shop_app;
	INSERT INTO shop."Order" ("CustomerId", "StoreId", "CustomOrderNumber", "OrderTotal")
	VALUES (1, 3, 'S3-1', 50), (2, 2, 'S2-3', 60)});
ok($node->poll_query_until('postgres',
	q{SELECT status = 'failed' FROM wa_notify.message WHERE order_key = '5'}), 'unknown sender: failed');
is($node->safe_psql('postgres', q{SELECT error_message FROM wa_notify.message WHERE order_key = '5'}),
	'the context named the sender "no_such_store", which does not exist (senders: default, store_2)',
	'the error names the unknown sender and the known ones');
ok($node->poll_query_until('postgres',
	q{SELECT status = 'sent' AND sender = 'store_2' FROM wa_notify.message WHERE order_key = '6'}),
	'the other order of that batch is sent by its sender');
$posts = $mock->posts;
is(scalar @$posts, 5, 'no request for the failed message');
is(scalar(grep { $_->{headers}{authorization} eq "Bearer $token2" && $_->{path} ne "/v23.0/$pnid2/messages" } @$posts)
	+ scalar(grep { $_->{headers}{authorization} eq "Bearer $WaMock::TOKEN" && $_->{path} ne "/v23.0/$WaMock::PNID/messages" } @$posts),
	0, 'no token ever went to the other number');

# the status card per sender
is($node->safe_psql('postgres',
	q{SELECT string_agg(concat_ws('|', sender, phone_number_id, enabled, queued, sent_today, failed_today,
	                              access_token_set), ',' ORDER BY sender) FROM wa_notify.senders}),
	"default|$WaMock::PNID|t|0|2|1|t,store_2|$pnid2|t|0|3|0|t",
	'senders: one row per sender with its own counts');
unlike($node->safe_psql('postgres', q{SELECT string_agg(s::text, ' ') FROM wa_notify.senders s}),
	qr/\Q$token2\E|\Q$WaMock::TOKEN\E/, 'no token in the senders view');

# one blacklist for all senders: a number store_2 learnt is unreachable
# (131026, "Message undeliverable" on Meta's error codes page) is not
# messaged by default either, and the blacklist says where it came from
$mock->control({ rules => { '5511987650002' => { code => 131026, count => 1 } } });
$node->safe_psql('postgres', q{SET ROLE shop_app;
	INSERT INTO shop."Order" ("CustomerId", "StoreId", "CustomOrderNumber", "OrderTotal")
	VALUES (2, 2, 'S2-4', 70)});
ok($node->poll_query_until('postgres',
	q{SELECT status = 'failed' FROM wa_notify.message WHERE order_key = '7'}), '131026 on store_2: failed');
is($node->safe_psql('postgres', q{SELECT number, source, error_code, sender FROM wa_notify.blacklist}),
	'5511987650002|auto|131026|store_2', 'blacklisted, from store_2');
$node->safe_psql('postgres', q{SET ROLE shop_app;
	INSERT INTO shop."Order" ("CustomerId", "StoreId", "CustomOrderNumber", "OrderTotal")
	VALUES (2, 1, 'S1-2', 80)});
ok($node->poll_query_until('postgres',
	q{SELECT status = 'skipped' AND sender = 'default' FROM wa_notify.message WHERE order_key = '8'}),
	"default skips the number store_2's send blacklisted");
is(scalar @{ $mock->posts }, 6, 'no request for the skipped message');

$node->stop;
done_testing();

# An installed, filled 1.0 is updated in place to 1.1 with ALTER EXTENSION
# wa_notify UPDATE: nothing is lost (settings, events, carriers, blacklist,
# watches, staged captures, queued, sent and failed messages, the id
# sequence), the shop's triggers still capture, the worker (which waits while
# the database is at 1.0) sends the queued messages, and the upgraded
# extension is the same, object for object, as a fresh 1.1 install.
#
# Every issue that changes the schema extends wa_notify--1.0--1.1.sql and
# this test: fill 1.0 with what the change must carry over, check it after.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaMock;
use WaNode;
use WaSchema;
use WaHistory;

my $mock = WaMock->new;
my $node = WaNode::preloaded('upgrade', database => 'shop', conf => "wa_notify.request_timeout = 2\n");
$node->safe_psql('postgres', q{
	CREATE ROLE shop_app LOGIN;
	CREATE DATABASE shop OWNER shop_app;
	CREATE DATABASE fresh;});

# --- a filled 1.0 -----------------------------------------------------------
$node->safe_psql('shop', q{CREATE EXTENSION wa_notify VERSION '1.0'});
is($node->safe_psql('shop', q{SELECT extversion FROM pg_extension WHERE extname = 'wa_notify'}), '1.0',
	'1.0 installed');
ok($node->poll_query_until('shop',
	q{SELECT query = 'waiting for ALTER EXTENSION wa_notify UPDATE (installed 1.0, library 1.1)'
	    FROM pg_stat_activity WHERE backend_type = 'wa_notify worker'}),
	'the worker waits while the database is at 1.0');

my $base = $mock->base_url;
$node->safe_psql('shop', qq{
	SELECT wa_notify.configure(access_token => 'EAAupgrade-token-0123456789', phone_number_id => '$WaMock::PNID',
	       business_account_id => '$WaMock::WABA', app_secret => 'upgradeAppSecret0123456789',
	       api_base_url => '$base', min_delay => 0, max_delay => 0, max_rate => 0, recipient_gap => 0,
	       max_per_batch => 1000, lookback_days => 5, quiet_hours_start => NULL);
	SELECT wa_notify.configure_event('shipment_created', template_name => 'envio_pedido',
	       params => ARRAY['customer_name', 'order_number', 'tracking_number'], button_param => 'tracking_url');
	SELECT wa_notify.configure_event('refund_issued', enabled => false);
	SELECT wa_notify.set_carrier('Correios', 'https://rastreamento.correios.com.br/?objeto={tracking}');
	SELECT wa_notify.block('(11) 90000-0001', 'asked by phone');
});
$node->safe_psql('shop', q{
	SET ROLE shop_app;
	CREATE TABLE customer (id int PRIMARY KEY, name text, phone text);
	CREATE TABLE orders (id serial PRIMARY KEY, customer_id int REFERENCES customer,
	                     status text NOT NULL DEFAULT 'new', total numeric(10,2));
	INSERT INTO customer VALUES (1, 'Maria', '(11) 98765-4321'), (2, 'João', '(21) 99876-5432');
	RESET ROLE;
	SELECT wa_notify.watch('order_placed', 'orders', 'id',
	  $$SELECT c.phone, c.name AS customer_name, o.id::text AS order_number, o.total
	      FROM orders o JOIN customer c ON c.id = o.customer_id WHERE o.id = $1::int$$);
	SELECT wa_notify.watch('order_cancelled', 'orders', 'id',
	  $$SELECT c.phone, c.name AS customer_name, o.id::text AS order_number
	      FROM orders o JOIN customer c ON c.id = o.customer_id WHERE o.id = $1::int$$,
	  $$status = 'canceled'$$);
	SET ROLE shop_app;
	INSERT INTO orders (customer_id, total) VALUES (1, 120.50);   -- staged: the worker waits
	RESET ROLE;
	INSERT INTO wa_notify.message (event, order_key, phone, params)
	VALUES ('order_processing', 'M1', '5511911112222', '{"customer_name": "Ana", "order_number": "M1"}');
	INSERT INTO wa_notify.message (event, order_key, phone, params, status, wamid, attempts, sent_at, http_status)
	VALUES ('order_processing', 'M2', '5511911113333', '{"customer_name": "Bia", "order_number": "M2"}',
	        'sent', 'wamid.OLD-SENT', 1, now() - interval '1 hour', 200);
	INSERT INTO wa_notify.message (event, order_key, phone, params, status, attempts, failed_at,
	                               error_code, error_message, error_class)
	VALUES ('order_processing', 'M3', '5511911114444', '{"customer_name": "Cid", "order_number": "M3"}',
	        'failed', 1, now() - interval '1 hour', 131026, 'Graph error 131026: undeliverable', 'fail');
	-- history: final messages untouched for weeks (the worker archives them
	-- after the update, doc/retention.md) and one left in review (it stays)
	INSERT INTO wa_notify.message (event, order_key, phone, params, status, wamid, attempts,
	                               created_at, updated_at, sent_at, delivered_at, failed_at)
	SELECT 'order_placed', 'H' || d, '55119111' || lpad(d::text, 5, '0'),
	       jsonb_build_object('customer_name', 'Hist', 'order_number', 'H' || d), st, 'wamid.HIST' || d, 1,
	       now() - d * interval '1 day', now() - d * interval '1 day', now() - d * interval '1 day',
	       CASE WHEN st = 'delivered' THEN now() - d * interval '1 day' END,
	       CASE WHEN st = 'failed' THEN now() - d * interval '1 day' END
	  FROM (VALUES (40, 'delivered'), (41, 'review'), (70, 'failed'), (85, 'delivered')) v(d, st);
});
is($node->safe_psql('shop', 'SELECT count(*) FROM wa_notify.capture_queue'), '1', 'one capture staged at 1.0');

# 1.0's columns and rows (1.1 adds settings, columns and tables of its own)
# (max_in_flight: 1.0's default of 32 becomes 1.1's auto, checked below)
my $names = $node->safe_psql('shop',
	q{SELECT string_agg(quote_literal(name), ',') FROM wa_notify.setting WHERE name <> 'max_in_flight'});
my $in_flight_1_0 = $node->safe_psql('shop', q{SELECT value FROM wa_notify.setting WHERE name = 'max_in_flight'});
my %before = map { $_ => $node->safe_psql('shop', $_) } (
	"SELECT name, value FROM wa_notify.setting WHERE name IN ($names) ORDER BY name",
	q{SELECT event, enabled, template_name, template_language, params, button_param, text_body,
	         template_status, held_reason FROM wa_notify.event ORDER BY event},
	'SELECT carrier, url_pattern, created_at FROM wa_notify.carrier ORDER BY carrier',
	'SELECT phone_key, phone, reason, source, error_code, created_at FROM wa_notify.blocked ORDER BY phone_key',
	'SELECT id, event, source, order_key, fires_when, context, owner FROM wa_notify.watch ORDER BY id',
	# the worker starts sending at the update's commit: what it may change
	# (status, attempts...) is checked below, message by message
	q{SELECT id, event, order_key, phone, params, created_at FROM wa_notify.message WHERE id <= 3 ORDER BY id});
my $last_id = $node->safe_psql('shop', q{SELECT last_value FROM wa_notify.message_id_seq});
# the shop's 1.0 triggers: one per watch and event kind (watch id, event, key, staged row)
my $watched = q{string_agg(concat_ws(' ', %1$s), E'\n' ORDER BY concat_ws(' ', %1$s))};
my $triggers_1_0 = $node->safe_psql('shop', sprintf(q{SELECT %s FROM (
	SELECT CASE WHEN tgtype & 16 <> 0 THEN 'upd' ELSE 'ins' END AS kind,
	       (string_to_array(encode(tgargs, 'escape'), '\000'))[1:5] AS a
	  FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal) t},
	sprintf($watched, 'kind, a[1], a[2], a[3], a[4], a[5]')));
like($triggers_1_0, qr/^ins 1 order_placed k id -\nins 2 order_cancelled k id -\nupd 2 order_cancelled k id -$/,
	'1.0 made a trigger per watch and event kind');
my $history = q{SELECT id, event, order_key, phone, params, status, wamid, created_at, updated_at, sent_at,
                       delivered_at, failed_at FROM %s WHERE order_key LIKE 'H%%' ORDER BY id};
my $history_before = $node->safe_psql('shop', sprintf($history, 'wa_notify.message'));

# --- the update -------------------------------------------------------------
$node->safe_psql('shop', 'ALTER EXTENSION wa_notify UPDATE');
is($node->safe_psql('shop', q{SELECT extversion FROM pg_extension WHERE extname = 'wa_notify'}), '1.1',
	'updated to 1.1');
# the update counts the 1.0 messages into the tally the reports read
WaHistory::tally_exact($node, 'shop', 'after the update');

for my $q (sort keys %before)
{
	is($node->safe_psql('shop', $q), $before{$q}, "kept: $q");
}
is($in_flight_1_0 . ' -> ' . $node->safe_psql('shop', q{SELECT value FROM wa_notify.setting WHERE name = 'max_in_flight'}),
	'32 -> 0', "max_in_flight left at 1.0's default (32) becomes auto (0)");
# the update attaches them again the 1.1 way: one trigger per event kind
# holding both watches (same keys, same staged row), no WHEN clause
is($node->safe_psql('shop', sprintf(q{SELECT %s FROM wa_notify._capture_entries('orders') c},
	sprintf($watched, 'c.kind, c.args[1], c.args[2], c.args[3], c.args[4], c.args[5]'))),
	$triggers_1_0, 'the update kept every watch of the 1.0 triggers');
is($node->safe_psql('shop', q{SELECT string_agg(tgname || ' ' || tgfoid::regproc || ' ' || (tgqual IS NULL), ', ' ORDER BY tgname)
	FROM pg_trigger WHERE tgrelid = 'orders'::regclass AND NOT tgisinternal}),
	'wa_notify_capture_ins wa_notify._capture true, wa_notify_capture_upd wa_notify._capture true',
	'one capture trigger per event kind, without WHEN clause');
is($node->safe_psql('shop', "SELECT count(*) FILTER (WHERE id <= $last_id) || ' ' || bool_and(id > $last_id OR id <= 7)
                               FROM wa_notify.message_history"),
	'7 true', 'kept: the id sequence (new messages number on)');

# the worker archives the 1.0 history (maintain() when it starts serving the
# database): every row kept, the one in review still live
ok($node->poll_query_until('shop', q{SELECT count(*) = 3 FROM wa_notify.message_archive}),
	'the worker archived the three final 1.0 messages');
is($node->safe_psql('shop', sprintf($history, 'wa_notify.message_history')), $history_before,
	'kept: the archived 1.0 messages, column for column');
is($node->safe_psql('shop', q{SELECT string_agg(order_key, ',' ORDER BY order_key) FROM wa_notify.message
                               WHERE order_key LIKE 'H%'}), 'H41', 'the message in review stays live');
# (the worker stages the 1.0 capture before its first maintain(): 8 in all)
is($node->safe_psql('shop', q{SELECT total FROM wa_notify.counts(now() - interval '1 year', now())}), '8',
	'counts() counts them all, live and archived');
WaHistory::tally_exact($node, 'shop', 'after the worker archived the 1.0 history');

# the worker serves the updated database: the hand-queued message is sent
ok($node->poll_query_until('shop',
	q{SELECT status = 'sent' FROM wa_notify.message WHERE order_key = 'M1'}),
	'the queued message is sent after the update');
# 1.1's senders: the 1.0 credentials are the sender 'default', which sent it
is($node->safe_psql('shop', q{SELECT string_agg(sender, ',') FROM wa_notify.sender}), 'default',
	'one sender after the update: default');
is($node->safe_psql('shop', q{SELECT sender, phone_number_id, access_token_set, enabled FROM wa_notify.senders}),
	"default|$WaMock::PNID|t|t", 'default holds the 1.0 phone number ID and token');
is($node->safe_psql('shop', q{SELECT sender FROM wa_notify.message WHERE order_key = 'M1'}), 'default',
	'the queued 1.0 message belongs to default');
my ($m1) = grep { ($_->{json}{to} // '') eq '5511911112222' } @{ $mock->wait_posts(1) };
like($m1->{path}, qr{^/v[0-9.]+/\Q$WaMock::PNID\E/messages\z}, "it was POSTed to the 1.0 number's messages edge");
is($m1->{headers}{authorization}, 'Bearer EAAupgrade-token-0123456789', 'with the 1.0 access token');
# 1.0's contexts ran as the watch's owner; 1.1's run as wa_notify_context,
# which has no grant yet: the staged capture waits (not failed), and the
# watch and the status card say which GRANT is missing
ok($node->poll_query_until('shop',
	q{SELECT count(*) = 1 FROM wa_notify.message WHERE event = 'order_placed' AND order_key = '1'
	                                                AND status = 'queued' AND resolved_at IS NULL}),
	'the staged capture is moved into the queue, unresolved');
like($node->safe_psql('shop', q{SELECT problem FROM wa_notify.watches WHERE event = 'order_placed'}),
	qr/^context: permission denied for table (customer|orders) \(GRANT SELECT ON (customer|orders) TO wa_notify_context;\)$/,
	'watches says which grant wa_notify_context lacks');
like($node->safe_psql('shop', q{SELECT capture_problems FROM wa_notify.status}),
	qr/watch 1 \(order_placed on public\.orders\): context: permission denied/, 'and so does the status card');
$node->safe_psql('shop', q{GRANT SELECT ON customer, orders TO wa_notify_context; SELECT wa_notify.wake()});
ok($node->poll_query_until('shop',
	q{SELECT status = 'sent' FROM wa_notify.message WHERE event = 'order_placed' AND order_key = '1'}),
	'after the GRANT, the staged capture is resolved and sent');
is($node->safe_psql('shop', q{SELECT count(*) FROM wa_notify.watches WHERE problem IS NOT NULL}), '0',
	'no watch has a problem any more');
my $posts = $mock->wait_posts(2);
is(join(',', sort map { $_->{json}{to} } @$posts), '5511911112222,5511987654321',
	'each sent once, to the right phones');
is($node->safe_psql('shop', q{SELECT status || ' ' || coalesce(wamid, '-') FROM wa_notify.message
                                WHERE order_key IN ('M2', 'M3') ORDER BY order_key}),
	"sent wamid.OLD-SENT\nfailed -", 'the sent and failed messages are untouched');

# the shop's 1.0 triggers still capture
$node->safe_psql('shop', q{
	SET ROLE shop_app;
	INSERT INTO orders (customer_id, total) VALUES (2, 80);
	UPDATE orders SET status = 'canceled' WHERE id = 1;});
ok($node->poll_query_until('shop',
	q{SELECT count(*) = 2 FROM wa_notify.message
	   WHERE status = 'sent' AND ((event, order_key) IN (('order_placed', '2'), ('order_cancelled', '1')))}),
	'the shop triggers made at 1.0 capture after the update, and the worker sends');
is(scalar @{ $mock->wait_posts(4) }, 4, 'four requests in all: nothing doubled');

# --- an upgraded 1.0 is a fresh 1.1 -----------------------------------------
$node->safe_psql('fresh', 'CREATE EXTENSION wa_notify');
my ($up, $fresh) = (WaSchema::describe($node, 'shop'), WaSchema::describe($node, 'fresh'));
ok(length($fresh) > 10_000, 'the description covers the extension');
is($up, $fresh, 'the upgraded extension equals a fresh 1.1, object for object');

# and what pg_dump writes of it (the config dump, comments) is the same too,
# shop tables aside
my @dump = map {
	my $out = $node->basedir . "/$_.sql";
	# (the archive's month partitions are the shop's data, as its rows are:
	# only the upgraded database has history to archive)
	$node->command_ok([ 'pg_dump', '--schema-only', '--schema=wa_notify', '--exclude-table=wa_notify.message_archive_*',
	                    '-d', $node->connstr($_), '-f', $out ],
		"pg_dump --schema-only of $_");
	# (\restrict carries a random key per dump)
	join("\n", sort grep { !/^(--|\\restrict |\\unrestrict )/ && /\S/ } split /\n/, slurp_file($out));
} ('shop', 'fresh');
is($dump[0], $dump[1], 'pg_dump --schema-only: upgraded and fresh equal (modulo ordering)');

$node->stop;
done_testing();

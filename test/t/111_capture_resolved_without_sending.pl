# doc/design.md, "Capture": every captured message has its phone, params and any skip or
# failure recorded shortly after the shop's commit, whether or not sending is
# possible: here no access token is set and the master switch is off, so the
# worker resolves captures but sends nothing.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaNode;

my $node = WaNode::preloaded('resolve');
$node->safe_psql('postgres', q{
CREATE EXTENSION wa_notify;
SELECT wa_notify.configure(enabled => false);
SELECT wa_notify.block('(21) 99999-0000', 'asked to stop');
CREATE TABLE orders (id serial PRIMARY KEY, customer text, phone text, total numeric(12,2));
GRANT SELECT ON orders TO wa_notify_context;   -- contexts run as that role
SELECT wa_notify.watch('order_placed', 'orders', 'id',
    $$SELECT phone, customer AS customer_name, id::text AS order_number, total
        FROM orders WHERE id = $1::int$$);
});

# three checkouts, each its own transaction, by the shop
$node->safe_psql('postgres', q{INSERT INTO orders (customer, phone, total) VALUES ('Ana', '(11) 98765-4321', 1234.5)});
$node->safe_psql('postgres', q{INSERT INTO orders (customer, phone, total) VALUES ('Bia', '21 99999-0000', 10)});
$node->safe_psql('postgres', q{INSERT INTO orders (customer, phone, total) VALUES ('Caio', 'no phone given', 20)});

ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 3 FROM wa_notify.message WHERE resolved_at IS NOT NULL}),
	'the worker resolved all three captures with sending impossible');

is($node->safe_psql('postgres', q{
SELECT string_agg(concat_ws('|', order_key, status, phone, params ->> 'customer_name', params ->> 'total',
                            error_message), E'\n' ORDER BY order_key)
  FROM wa_notify.message}),
	join("\n",
		'1|queued|5511987654321|Ana|1234.50',
		'2|skipped|5521999990000|Bia|10.00|phone 5521999990000 is blacklisted (manual: asked to stop)',
		q{3|failed|Caio|20.00|invalid phone number "no phone given": the phone number contains characters other than digits, spaces, dashes, dots and parentheses}),
	'phone, params, skip and failure recorded; nothing sent');
is($node->safe_psql('postgres', q{SELECT count(*) FROM wa_notify.message WHERE sent_at IS NOT NULL OR attempts > 0}),
	'0', 'no send attempt without a token and with the master switch off');

$node->stop;
done_testing();

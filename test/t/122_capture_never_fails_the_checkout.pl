# Capture never fails the shop's statement, and a watch never blocks the
# shop's DDL (issue 13).  The shop's role owns the tables and writes them;
# each failure below lets the INSERT/UPDATE commit, and the message or the
# status card says why:
#  - fires_when that raises on a value (code::int = 40 with 'on hold');
#  - an index, a trigger or a changed column on wa_notify.capture_queue (a
#    WARNING, the capture is lost, the status card names the damage, and an
#    index dropped again stops the damage at once);
#  - the order key column renamed (the message fails; watches and the
#    status card name the watch);
#  - a row too large to stage for the context;
# and ALTER COLUMN ... TYPE on watched columns (integer to text, enum to
# text and back), ADD and DROP COLUMN succeed with the watches attached, and
# the watches whose expression still makes sense keep firing.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaNode;

my $node = WaNode::preloaded('checkout');
$node->safe_psql('postgres', q{
CREATE EXTENSION wa_notify;
SELECT wa_notify.configure(enabled => false, use_templates => false);
});
WaNode::shop_roles($node);
$node->safe_psql('postgres', q{
SET ROLE shop;
CREATE TYPE order_state AS ENUM ('new', 'paid', 'cancelled');
CREATE TABLE orders (id serial PRIMARY KEY, phone text DEFAULT '11987654321', code text,
                     st order_state, status integer DEFAULT 10, ref text, note text);
CREATE TABLE parcels (id serial PRIMARY KEY, phone text DEFAULT '11987654321', label text);
GRANT SELECT ON orders, parcels TO wa_notify_context, wa_admin;
GRANT TRIGGER ON orders, parcels TO wa_admin;
SET ROLE wa_admin;
SELECT wa_notify.watch('order_placed', 'orders', 'id', $$SELECT phone FROM orders WHERE id = $1::int$$);
SELECT wa_notify.watch('order_cancelled', 'orders', 'id', $$SELECT phone FROM orders WHERE id = $1::int$$,
                       'code::int = 40');
SELECT wa_notify.watch('order_processing', 'orders', 'id', $$SELECT phone FROM orders WHERE id = $1::int$$,
                       $$st = 'paid'$$);
SELECT wa_notify.watch('shipment_created', 'orders', 'id', $$SELECT phone FROM orders WHERE id = $1::int$$,
                       $$status = '40'$$);
SELECT wa_notify.watch('shipment_delivered', 'orders', 'id', $$SELECT phone FROM orders WHERE id = $1::int$$,
                       'status = 50');
SELECT wa_notify.watch('refund_issued', 'orders', 'ref', $$SELECT phone FROM orders WHERE ref = $1$$);
-- the context reads the whole row ($2): the row is staged as jsonb
SELECT wa_notify.watch('order_placed', 'parcels', 'id', $$SELECT $2 ->> 'phone' AS phone, $2 AS parcel$$);
});
my %wid = map { split /\|/ } split /\n/, $node->safe_psql('postgres',
	q{SELECT event || '@' || source || '|' || id FROM wa_notify.watch});

sub shop
{
	my ($sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', "SET ROLE shop; $sql", on_error_stop => 1);
	return ($rc, $err);
}
sub resolved
{
	return $node->poll_query_until('postgres',
		q{SELECT (SELECT count(*) FROM wa_notify.capture_queue) = 0
		     AND (SELECT count(*) FROM wa_notify.message WHERE resolved_at IS NULL) = 0});
}
sub messages
{
	my ($where) = @_;
	return $node->safe_psql('postgres',
		"SELECT string_agg(concat_ws('|', event, order_key, status, error_message), E'\\n' ORDER BY id)"
		  . " FROM wa_notify.message WHERE $where");
}
sub card { $node->safe_psql('postgres', 'SELECT capture_problems FROM wa_notify.status') }

# fires_when that raises: the INSERT commits, the message says why
my ($rc, $err) = shop(q{INSERT INTO orders (code, ref) VALUES ('on hold', 'R1')});
is($rc, 0, 'an INSERT whose row makes fires_when raise commits');
ok(resolved(), 'captures resolved');
is(messages(q{event = 'order_cancelled'}),
	"order_cancelled|failed|fires_when of watch $wid{'order_cancelled@public.orders'} (order_cancelled on public.orders) failed: invalid input syntax for type integer: \"on hold\"; the expression was: code::int = 40 (order 1)",
	'the message failed with the event, the table, the expression and the error');
is(messages(q{event = 'order_placed' AND order_key = '1'}), 'order_placed|1|queued',
	'the other watches of that row captured it');

# a damaged capture_queue: the write commits, a WARNING, the card names it
for my $damage (
	[ 'CREATE INDEX cq_extra ON wa_notify.capture_queue (watch_id)', 'DROP INDEX wa_notify.cq_extra',
	  'wa_notify.capture_queue has an index' ],
	[ q{CREATE FUNCTION public.cq_trg() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
	    CREATE TRIGGER cq_extra BEFORE INSERT ON wa_notify.capture_queue FOR EACH ROW EXECUTE FUNCTION public.cq_trg()},
	  'DROP TRIGGER cq_extra ON wa_notify.capture_queue; DROP FUNCTION public.cq_trg()',
	  'wa_notify.capture_queue has a trigger' ])
{
	my ($break, $repair, $says) = @$damage;
	$node->safe_psql('postgres', $break);
	my $before = $node->safe_psql('postgres', 'SELECT count(*) FROM wa_notify.message');
	($rc, $err) = shop(q{INSERT INTO orders (ref) VALUES (NULL) RETURNING id});
	is($rc, 0, "with \"$says\" the shop's INSERT commits");
	like($err, qr/WARNING:  wa_notify could not capture order_placed: \Q$says\E/, 'with a WARNING');
	is(card(), $says, 'the status card names the damage');
	$node->safe_psql('postgres', $repair);
	is(card(), '', 'repaired: the card is clear at once (no VACUUM needed)');
	ok(resolved(), 'nothing left to resolve');
	is($node->safe_psql('postgres', 'SELECT count(*) FROM wa_notify.message'), $before,
		'the capture made while damaged is lost, nothing else');
}

# the order key column renamed: the INSERT commits, the message fails, watches and the card say why
$node->safe_psql('postgres', 'SET ROLE shop; ALTER TABLE orders RENAME COLUMN ref TO reference');
($rc, $err) = shop(q{INSERT INTO orders (reference) VALUES ('R9')});
is($rc, 0, 'an INSERT after the key column was renamed commits');
ok(resolved(), 'captures resolved');
is(messages(q{event = 'refund_issued' AND status = 'failed'}), 'refund_issued|failed|the order key column ref does not exist',
	'the message says the key column is gone');
my $w = $wid{'refund_issued@public.orders'};
is($node->safe_psql('postgres', "SELECT problem FROM wa_notify.watches WHERE id = $w"),
	'order_key ref: column "ref" does not exist', 'watches names the problem');
like(card(), qr/^watch $w \(refund_issued on public\.orders\): order_key ref: column "ref" does not exist$/,
	'the status card names the watch');
$node->safe_psql('postgres', 'SET ROLE shop; ALTER TABLE orders RENAME COLUMN reference TO ref');
is(card(), '', 'renamed back: the card is clear');

# DDL on watched columns succeeds with the watches attached
($rc, $err) = shop(q{ALTER TABLE orders ALTER COLUMN st TYPE text});
is($rc, 0, 'enum to text on a watched column succeeds') or diag($err);
# (each capture is resolved before the next DDL: what is tested is the
# trigger after each type change, not a context racing the next ALTER)
shop(q{INSERT INTO orders (ref) VALUES ('R20'); UPDATE orders SET st = 'paid' WHERE ref = 'R20'});
ok(resolved(), 'R20 resolved');
($rc, $err) = shop(q{ALTER TABLE orders ALTER COLUMN st TYPE order_state USING st::order_state});
is($rc, 0, 'and text back to the enum') or diag($err);
shop(q{INSERT INTO orders (ref) VALUES ('R21'); UPDATE orders SET st = 'paid' WHERE ref = 'R21'});
ok(resolved(), 'R21 resolved');
($rc, $err) = shop(q{ALTER TABLE orders ALTER COLUMN status TYPE text; ALTER TABLE orders ADD COLUMN extra int;
                     ALTER TABLE orders DROP COLUMN note});
is($rc, 0, 'integer to text on a watched column, ADD and DROP COLUMN succeed') or diag($err);
shop(q{INSERT INTO orders (ref) VALUES ('R22'); UPDATE orders SET status = '40' WHERE ref = 'R22'});
ok(resolved(), 'captures resolved');
is(messages(q{event IN ('order_processing', 'shipment_created') AND status = 'queued'}),
	join("\n", 'order_processing|5|queued', 'order_processing|6|queued', 'shipment_created|7|queued'),
	'st = \'paid\' fired as text and as enum again, status = \'40\' fired as text')
  or diag($node->safe_psql('postgres', q{SELECT string_agg(concat_ws('|', id, event, order_key, status, error_message), E'\n' ORDER BY id) FROM wa_notify.message}));
$w = $wid{'shipment_delivered@public.orders'};
is(card(), "watch $w (shipment_delivered on public.orders): fires_when status = 50: operator does not exist: text = integer",
	'the watch whose expression no longer makes sense is named on the status card');
like(messages(q{id = (SELECT min(id) FROM wa_notify.message WHERE event = 'shipment_delivered')}),
	qr/^shipment_delivered\|failed\|fires_when of watch $w \(shipment_delivered on public\.orders\) failed: operator does not exist: text = integer/,
	'and its captures fail with that error');

# a row too large to stage for the context: the INSERT commits, the message fails
($rc, $err) = shop(q{INSERT INTO parcels (label) VALUES (repeat('x', 17 * 1024 * 1024))});
is($rc, 0, 'an INSERT of a 17 MB row commits');
ok(resolved(), 'captures resolved');
like(messages(q{watch_id = } . $wid{'order_placed@public.parcels'}),
	qr/^order_placed\|failed\|the row is \d+ bytes, over the 16777216 bytes wa_notify stages for a context \(order 1\)$/,
	'its message failed: the row is too large to stage');

# a column added to capture_queue: the write commits, the card says so
$node->safe_psql('postgres', 'ALTER TABLE wa_notify.capture_queue ADD COLUMN extra int');
($rc, $err) = shop(q{INSERT INTO orders (ref) VALUES ('R30')});
is($rc, 0, 'with a changed capture_queue the INSERT commits');
is(card() =~ s/;.*//r, "wa_notify.capture_queue's columns were changed", 'the card names the damage');
is($node->safe_psql('postgres', q{SELECT count(*) FROM orders WHERE ref = 'R30'}), '1', 'the order is there');

$node->stop;
done_testing();

# Configuration survives pg_dump + restore into a fresh database: settings,
# events, carriers, the blacklist and the message log; the extension's own
# seed rows do not clash with the dumped ones.  Secrets never sit in a dump:
# the restore says (NOTICE, status card) which ones must be set again.
# The message tally (45_tally.sql) is not dumped: the live table's restore
# counts it again, and the first maintain() counts an archive month restored
# past the parent's trigger.
# DROP EXTENSION with messages queued says what it drops.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib";
use WaNode;
use WaHistory;
use IPC::Run;

my $node = WaNode::preloaded('dump');

$node->safe_psql('postgres', q{
CREATE DATABASE shop;
});
$node->safe_psql('shop', q{
CREATE EXTENSION wa_notify;
SELECT wa_notify.configure(access_token => 'EAAGdumpedtokenvalue0123456789', phone_number_id => '106540352242922',
                           polling_interval => 900, min_delay => 1.5, max_delay => 4,
                           quiet_hours_start => '22:00', quiet_hours_end => '07:30',
                           webhook_verify_token => 'dump-restore-verify-token',
                           opt_out_keywords => ARRAY['PARAR', 'CHEGA']);
SELECT wa_notify.configure_event('order_processing', enabled => false);
SELECT wa_notify.configure_event('shipment_created', template_name => 'rastreio_envio',
                                 template_language => 'pt_PT', params => ARRAY['customer_name', 'tracking_number']);
SELECT wa_notify.set_carrier('Correios', 'https://rastreamento.correios.com.br/app/index.php?objeto={tracking}');
SELECT wa_notify.block('(11) 98765-4321', 'pediu para parar');
INSERT INTO wa_notify.message (event, order_key, phone, params, status, wamid)
VALUES ('order_placed', '1001', '5511987650001', '{"total": "10,00"}', 'delivered', 'wamid.ABC');
-- an archived month: two messages of 40 days ago, moved as maintain() moves them
SELECT wa_notify._archive_partition_for(now() - interval '40 days');
INSERT INTO wa_notify.message (event, order_key, phone, params, status, wamid, created_at, sent_at, delivered_at)
SELECT 'order_placed', 'A' || g, '551198765000' || g, '{}', 'delivered', 'wamid.A' || g,
       now() - interval '40 days', now() - interval '40 days', now() - interval '40 days'
  FROM generate_series(1, 2) g;
WITH d AS (DELETE FROM wa_notify.message WHERE order_key LIKE 'A%' RETURNING *)
INSERT INTO wa_notify.message_archive SELECT * FROM d;
});

my $snapshot = q{
SELECT string_agg(name || '=' || coalesce(value, '<unset>'), ', ' ORDER BY name) FROM wa_notify.setting
 WHERE NOT is_secret;
SELECT string_agg(concat_ws('|', event, enabled, template_name, template_language, params::text), ', ' ORDER BY event)
  FROM wa_notify.event;
SELECT string_agg(carrier || ' ' || url_pattern, ', ') FROM wa_notify.carrier;
SELECT string_agg(concat_ws('|', phone_key, phone, reason, source), ', ') FROM wa_notify.blocked;
SELECT string_agg(concat_ws('|', id, event, order_key, phone, params::text, status, wamid), ', ') FROM wa_notify.message;
};
my $before = $node->safe_psql('shop', $snapshot);

my $dump = $node->basedir . '/shop.dump';
command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('shop'), '-f', $dump ], 'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
my ($restore_out, $restore_err) = ('', '');
# (pg_restore shows the server's notices with --verbose; psql always does)
ok(IPC::Run::run([ 'pg_restore', '--verbose', '--exit-on-error', '-d', $node->connstr('restored'), $dump ],
	'>', \$restore_out, '2>', \$restore_err), 'pg_restore');

WaHistory::tally_exact($node, 'shop', 'before the dump');
my $after = $node->safe_psql('restored', $snapshot);
is($after, $before, 'settings, events, carriers, blacklist and messages survive the round trip');
like($before, qr/polling_interval=900/, 'the snapshot holds the changed settings');

# the tally: the live table counted again by its restore; the archive month,
# restored into its partition, once a maintain() has counted it (this one,
# or the restored database's worker's first)
WaHistory::maintain($node, 'restored');
is($node->safe_psql('restored', q{SELECT sum(n) FROM wa_notify.message_tally WHERE axis = 'c' AND part <> 'infinity'}),
	'2', 'restored: the archived month is counted');
WaHistory::tally_exact($node, 'restored', 'after the restore and maintain()');

# secrets: not in the dump, so not restored; the restore says which
my $plain = '';
IPC::Run::run([ 'pg_dump', '-d', $node->connstr('shop') ], '>', \$plain) or die;
unlike($plain, qr/EAAGdumpedtokenvalue|dump-restore-verify-token/, 'no secret in the dump');
is($node->safe_psql('restored', q{
SELECT string_agg(name || '=' || CASE WHEN value IS NULL THEN 'unset'
                                      WHEN value = 'dump-restore-verify-token' THEN 'dumped' ELSE 'new' END,
                  ', ' ORDER BY name) FROM wa_notify.setting WHERE is_secret}),
	'access_token=unset, app_secret=unset, callback_key=new, webhook_verify_token=new',
	'restored: no secret from the dump (the verify token and the callback key are generated anew)');
like($restore_err, qr/wa_notify: the dump holds no secrets; set again: access_token, app_secret, webhook_verify_token/,
	'the restore says which secrets must be set again');
is($node->safe_psql('restored', 'SELECT secrets_to_set FROM wa_notify.status'),
	'{access_token,app_secret,webhook_verify_token}', 'and so does the status card');
$node->safe_psql('restored', "SELECT wa_notify.configure(access_token => 'EAAGrestoredtoken0123456789')");
is($node->safe_psql('restored', 'SELECT secrets_to_set FROM wa_notify.status'),
	'{app_secret,webhook_verify_token}', 'a secret set again leaves the list');

# the restored database keeps working: new messages get fresh ids
is($node->safe_psql('restored', q{
INSERT INTO wa_notify.message (event, order_key, phone, params) VALUES ('order_placed', '1002', '5511987650002', '{}')
RETURNING id > (SELECT min(id) FROM wa_notify.message)}), 't', 'sequence restored');

# DROP EXTENSION while messages are queued: a NOTICE says what is lost
$node->safe_psql('shop', q{
INSERT INTO wa_notify.message (event, order_key, phone, params) VALUES ('order_placed', '1003', '5511987650003', '{}')});
my ($ret, $out, $err) = $node->psql('shop', 'DROP EXTENSION wa_notify CASCADE');
is($ret, 0, 'DROP EXTENSION succeeds');
like($err, qr/NOTICE:  wa_notify: 1 message\(s\) are queued and will never be sent/,
	'it warns that queued messages are dropped');
($ret, $out, $err) = $node->psql('restored', 'DELETE FROM wa_notify.message; DROP EXTENSION wa_notify');
unlike($err, qr/will never be sent/, 'no warning when nothing is queued');

$node->stop;
done_testing();

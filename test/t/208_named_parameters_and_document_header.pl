# A template with named parameters and a document header reaches the Graph
# API exactly so (issue 10); a non-https document link fails the message
# before any request.  Shapes from Meta's "Template components" and
# templates overview ("parameter formats") pages
# (developers.facebook.com/documentation/business-messaging/whatsapp/templates/components):
# {"type": "header", "parameters": [{"type": "document", "document":
# {"link", "filename"}}]} and body parameters {"type": "text",
# "parameter_name", "text"}.
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
my $node = WaMock::setup_node('named', $mock);
sub sql { $node->safe_psql('postgres', $_[0]) }

sql(q{SELECT wa_notify.configure_event('order_placed', template_name => 'pedido_confirmado',
      params => ARRAY['customer_name', 'order_number'], parameter_format => 'named',
      header_document => 'danfe_url', header_filename => 'nota-fiscal-{order_number}.pdf')});

my $good = '5511987650101';
my $id = WaMock::enqueue($node, 'order_placed', 'N1', $good,
	{ customer_name => 'Ana', order_number => 'N1', danfe_url => 'https://loja.example/nfe/N1.pdf' });
WaMock::wait_status($node, $id, 'sent');
my $to = $mock->posts_to($good);
is(scalar @$to, 1, 'one request');
is_deeply($to->[0]{json}{template},
	{ name => 'pedido_confirmado', language => { code => 'pt_BR' },
	  components => [
		{ type => 'header', parameters => [ { type => 'document',
			document => { link => 'https://loja.example/nfe/N1.pdf', filename => 'nota-fiscal-N1.pdf' } } ] },
		{ type => 'body', parameters => [
			{ type => 'text', parameter_name => 'customer_name', text => 'Ana' },
			{ type => 'text', parameter_name => 'order_number', text => 'N1' } ] } ] },
	'the request carries the document header and the named body parameters');
is(sql("SELECT wa_notify.preview('order_placed', 'N1')::jsonb = '" . $to->[0]{body} . "'::jsonb"), 't',
	'preview() shows the exact body that was sent');

my $bad = '5511987650102';
my $bid = WaMock::enqueue($node, 'order_placed', 'N2', $bad,
	{ customer_name => 'Rui', order_number => 'N2', danfe_url => 'http://loja.example/nfe/N2.pdf' });
WaMock::wait_status($node, $bid, 'failed');
is(sql("SELECT error_class, error_message FROM wa_notify.message WHERE id = $bid"),
	'message|could not render the message: the document URL in field "danfe_url" is not an https URL',
	'a non-https link fails the message with a clear error');
# a later message to another phone is sent: the bad one was decided before it
my $after = WaMock::enqueue($node, 'order_placed', 'N3', '5511987650103',
	{ customer_name => 'Eva', order_number => 'N3', danfe_url => 'https://loja.example/nfe/N3.pdf' });
WaMock::wait_status($node, $after, 'sent');
is(scalar @{ $mock->posts_to($bad) }, 0, 'no request was made for the non-https link');

# --- sync_templates() reads category, quality and parameter format ---------
# (the message_templates edge's fields: id, name, language, status, category,
# quality_score {score}, parameter_format)
sql(q{SELECT wa_notify.configure_event('order_placed', parameter_format => '')});
my %tpl = (id => '1148245153505410', name => 'pedido_confirmado', language => 'pt_BR', status => 'APPROVED',
	category => 'UTILITY', quality_score => { score => 'GREEN' }, parameter_format => 'NAMED');
$mock->control({ templates => [ {%tpl} ] });
is(sql('SELECT templates, events_updated FROM wa_notify.sync_templates()'), '1|1', 'one template synced');
is(sql(q{SELECT status, category, quality, parameter_format, template_id FROM wa_notify.templates
          WHERE name = 'pedido_confirmado'}), 'APPROVED|UTILITY|GREEN|named|1148245153505410',
	'the template view shows what Meta said');
is(sql(q{SELECT parameter_format FROM wa_notify.events WHERE event = 'order_placed'}), 'named',
	'the event takes the synced parameter format');
is(sql(q{SELECT count(*) FROM wa_notify.event WHERE held_reason IS NOT NULL}), '0', 'nothing held');
# Meta moved it to MARKETING: a later sync sees the move and holds exactly that event
$mock->control({ templates => [ { %tpl, category => 'MARKETING' } ] });
sql('SELECT wa_notify.sync_templates()');
is(sql(q{SELECT string_agg(event, ',') FROM wa_notify.event WHERE held_reason IS NOT NULL}), 'order_placed',
	'the move to MARKETING holds exactly the event using the template');
is(sql(q{SELECT previous_category, category FROM wa_notify.templates WHERE name = 'pedido_confirmado'}),
	'UTILITY|MARKETING', 'the move is recorded');

$node->stop;
done_testing();

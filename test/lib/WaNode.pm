# WaNode: a started test cluster with wa_notify preloaded, its worker serving
# the "postgres" database (or the one given).
#
#   my $node = WaNode::preloaded('name');
#   my $node = WaNode::preloaded('name', allows_streaming => 1, conf => "...", database => 'x');
#   my $out = WaNode::sql($node, 'SELECT ...');   # in "postgres", dies on error
package WaNode;
use strict;
use warnings;
use PostgreSQL::Test::Cluster;

sub preloaded
{
	my ($name, %opt) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(allows_streaming => $opt{allows_streaming} ? 1 : 0);
	my $db = $opt{database} // 'postgres';
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'wa_notify'
wa_notify.database = '$db'
} . ($opt{conf} // ''));
	$node->start;
	return $node;
}

# one statement in the "postgres" database; its output as text
sub sql
{
	my ($node, $query) = @_;
	return $node->safe_psql('postgres', $query);
}

1;

# WaNode: a started test cluster with wa_notify preloaded, its worker serving
# the "postgres" database (or the one given).
#
#   my $node = WaNode::preloaded('name');
#   my $node = WaNode::preloaded('name', allows_streaming => 1, conf => "...", database => 'x');
#   WaNode::shop_roles($node);    # after CREATE EXTENSION: roles as in a real install
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

# The roles of a real install, in "postgres": the shop's application role
# "shop" (LOGIN, owns schema public as a PG15 database owner does, so its
# tables and functions are its own) and the admin role "wa_admin" with
# exactly the grants of doc/roles.md.  Run after CREATE EXTENSION.
sub shop_roles
{
	my ($node) = @_;
	$node->safe_psql('postgres', q{
CREATE ROLE shop LOGIN;
ALTER SCHEMA public OWNER TO shop;
CREATE ROLE wa_admin NOLOGIN;
GRANT USAGE ON SCHEMA wa_notify TO wa_admin;
GRANT SELECT ON ALL TABLES IN SCHEMA wa_notify TO wa_admin;
GRANT INSERT, UPDATE ON wa_notify.message TO wa_admin;
GRANT USAGE ON SEQUENCE wa_notify.message_id_seq TO wa_admin;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA wa_notify TO wa_admin;
});
	return;
}

1;

# WaSchema: a description of everything the extension wa_notify owns in a
# database, one line per object, in a stable order: tables and their columns
# (type, default, not null, generated), constraints, indexes, views,
# functions (full definition, security, settings, ACL), triggers on its own
# tables, sequences, comments, owners and privileges, and the extension's
# config-dump registration.  pg_dump --schema-only writes only
# "CREATE EXTENSION" for an extension's members, so comparing its output
# proves little; this compares the members themselves.
#
#   is(WaSchema::describe($node, 'db1'), WaSchema::describe($node, 'db2'));
package WaSchema;
use strict;
use warnings;

my $query = <<'SQL';
WITH members AS (
    SELECT d.classid, d.objid
      FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
     WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'wa_notify' AND d.deptype = 'e'),
lines AS (
    SELECT 'rel ' || c.relkind::text || ' ' || c.oid::regclass || ' owner=' || pg_get_userbyid(c.relowner)
           || ' acl=' || coalesce(c.relacl::text, '-') || ' opts=' || coalesce(c.reloptions::text, '-')
           || ' comment=' || coalesce(obj_description(c.oid, 'pg_class'), '-') AS l
      FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
    UNION ALL
    SELECT 'col ' || c.oid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
           || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
           || CASE WHEN a.attgenerated <> '' THEN ' generated' ELSE '' END
           || ' acl=' || coalesce(a.attacl::text, '-')
      FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
    UNION ALL
    SELECT 'con ' || co.conrelid::regclass || ' ' || co.conname || ' ' || pg_get_constraintdef(co.oid)
      FROM pg_constraint co JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = co.conrelid
    UNION ALL
    SELECT 'idx ' || pg_get_indexdef(i.indexrelid)
      FROM pg_index i JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = i.indrelid
    UNION ALL
    SELECT 'view ' || c.oid::regclass || ' ' || pg_get_viewdef(c.oid)
      FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
     WHERE c.relkind IN ('v', 'm')
    UNION ALL
    SELECT 'trg ' || pg_get_triggerdef(t.oid)
      FROM pg_trigger t JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = t.tgrelid
     WHERE NOT t.tgisinternal
    UNION ALL
    SELECT 'fn ' || p.oid::regprocedure || ' owner=' || pg_get_userbyid(p.proowner)
           || ' acl=' || coalesce(p.proacl::text, '-')
           || ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '-') || E'\n'
           || pg_get_functiondef(p.oid)
      FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
    UNION ALL
    SELECT 'type ' || t.oid::regtype
      FROM members m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
    UNION ALL
    SELECT 'evt ' || et.evtname || ' ' || et.evtevent || ' ' || et.evtfoid::regproc || ' ' || coalesce(et.evttags::text, '-')
      FROM members m JOIN pg_event_trigger et ON m.classid = 'pg_event_trigger'::regclass AND et.oid = m.objid
    UNION ALL
    SELECT 'schema ' || n.nspname || ' acl=' || coalesce(n.nspacl::text, '-')
      FROM pg_namespace n WHERE n.nspname = 'wa_notify'
    UNION ALL
    SELECT 'ext ' || e.extversion || ' config=' || coalesce((SELECT string_agg(x::regclass::text, ',' ORDER BY x::regclass::text)
                                                              FROM unnest(e.extconfig) x), '-')
           || ' cond=' || coalesce((SELECT string_agg(c, ',' ORDER BY c) FROM unnest(e.extcondition) c), '-')
      FROM pg_extension e WHERE e.extname = 'wa_notify'
    UNION ALL
    SELECT 'other ' || m.classid::regclass || ' ' || pg_describe_object(m.classid, m.objid, 0)
      FROM members m
     WHERE m.classid NOT IN ('pg_class'::regclass, 'pg_proc'::regclass, 'pg_type'::regclass,
                             'pg_event_trigger'::regclass))
SELECT string_agg(l, E'\n' ORDER BY l) FROM lines
SQL

sub describe
{
	my ($node, $db) = @_;
	return $node->safe_psql($db, $query);
}

1;

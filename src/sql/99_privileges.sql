-- 99_privileges.sql: nothing is granted to PUBLIC but pure helpers; sites
-- grant roles as doc/roles.md says (admin, reporting, webhook relay).

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA wa_notify FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA wa_notify FROM PUBLIC;

-- pure functions with no data access: harmless, and views call them
GRANT EXECUTE ON FUNCTION wa_notify.normalize_phone(text, text), wa_notify.phone_key(text),
                          wa_notify.mask_phone(text), wa_notify.graph_error_class(integer, integer),
                          wa_notify._graph_errors()
      TO PUBLIC;

-- The functions that look across tenants (SECURITY DEFINER, migrations 0014 and 0015) were
-- executable by PUBLIC, i.e. by every role of the cluster, as every new function is: one of
-- them answers a console user's password hash by name. Like those of migration 0016, they are
-- now the application role's (and their owner's) alone (docs/tenants.md, "Isolation").
REVOKE ALL ON FUNCTION token_by_hash(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenants_with_due_deliveries(timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION console_user_for_sign_in(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION token_by_hash(text) TO competence_bridge_app;
GRANT EXECUTE ON FUNCTION tenants_with_due_deliveries(timestamptz) TO competence_bridge_app;
GRANT EXECUTE ON FUNCTION console_user_for_sign_in(text) TO competence_bridge_app;

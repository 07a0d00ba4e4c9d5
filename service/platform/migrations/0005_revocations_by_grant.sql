-- Revoking a grant that was revoked already is answered 409 with the earlier revocation,
-- looked up by the grant's id (admin_grant_revocation_of_grant).
CREATE INDEX grant_revocations_grant_idx ON grant_revocations (grant_id);

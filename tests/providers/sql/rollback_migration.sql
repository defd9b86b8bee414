-- Rollback migration: 20260128_create_feature_flags

-- Drop tables
DROP TABLE IF EXISTS feature_flag_audit_log CASCADE;
DROP TABLE IF EXISTS org_feature_flags CASCADE;
DROP TABLE IF EXISTS feature_flags CASCADE;

-- Drop functions
DROP FUNCTION IF EXISTS is_feature_enabled(UUID, TEXT);
DROP FUNCTION IF EXISTS get_org_enabled_features(UUID);
DROP FUNCTION IF EXISTS update_feature_flag(TEXT, BOOLEAN, INTEGER);
DROP FUNCTION IF EXISTS log_feature_flag_change();

-- Remove migration record
DELETE FROM schema_migrations WHERE version = '20260128_create_feature_flags';

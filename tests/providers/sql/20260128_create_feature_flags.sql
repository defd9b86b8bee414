-- Migration 20260128_create_feature_flags: the feature flags system the runbook rolls back.
-- Modelled on the app's migration, made to run on a plain PostgreSQL: no Supabase `auth`
-- schema (so no row-level security policies and no foreign key to auth.users), and its
-- trigger function reads enabled_globally (the app's reads OLD.enabled, which feature_flags
-- does not have, so every UPDATE of a flag would fail).

CREATE TABLE IF NOT EXISTS feature_flags (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  flag_key TEXT NOT NULL UNIQUE,
  flag_name TEXT NOT NULL,
  description TEXT,
  enabled_globally BOOLEAN DEFAULT false,
  rollout_percentage INTEGER DEFAULT 0 CHECK (rollout_percentage BETWEEN 0 AND 100),
  created_at TIMESTAMPTZ DEFAULT NOW(),
  updated_at TIMESTAMPTZ DEFAULT NOW()
);

CREATE TABLE IF NOT EXISTS org_feature_flags (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  flag_key TEXT NOT NULL REFERENCES feature_flags(flag_key) ON DELETE CASCADE,
  enabled BOOLEAN NOT NULL,
  created_at TIMESTAMPTZ DEFAULT NOW(),
  updated_at TIMESTAMPTZ DEFAULT NOW(),
  UNIQUE(org_id, flag_key)
);

CREATE INDEX IF NOT EXISTS idx_feature_flags_enabled ON feature_flags(enabled_globally);
CREATE INDEX IF NOT EXISTS idx_org_feature_flags_org_id ON org_feature_flags(org_id);

ALTER TABLE feature_flags ENABLE ROW LEVEL SECURITY;
ALTER TABLE org_feature_flags ENABLE ROW LEVEL SECURITY;

CREATE TABLE IF NOT EXISTS feature_flag_audit_log (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  flag_key TEXT NOT NULL,
  org_id UUID REFERENCES organizations(id) ON DELETE SET NULL,
  action TEXT NOT NULL CHECK (action IN ('enabled', 'disabled', 'rollout_changed')),
  previous_value JSONB,
  new_value JSONB,
  changed_by UUID,
  changed_at TIMESTAMPTZ DEFAULT NOW()
);

CREATE OR REPLACE FUNCTION is_feature_enabled(p_org_id UUID, p_flag_key TEXT)
RETURNS BOOLEAN AS $$
DECLARE
  v_org_override BOOLEAN;
  v_global_enabled BOOLEAN;
  v_rollout_percentage INTEGER;
BEGIN
  SELECT enabled INTO v_org_override
  FROM org_feature_flags WHERE org_id = p_org_id AND flag_key = p_flag_key;
  IF FOUND THEN
    RETURN v_org_override;
  END IF;

  SELECT enabled_globally, rollout_percentage INTO v_global_enabled, v_rollout_percentage
  FROM feature_flags WHERE flag_key = p_flag_key;
  IF NOT FOUND THEN
    RETURN false;  -- an unknown flag is off
  END IF;
  IF v_global_enabled THEN
    RETURN true;
  END IF;
  RETURN v_rollout_percentage > 0 AND abs(hashtext(p_org_id::text) % 100) < v_rollout_percentage;
END;
$$ LANGUAGE plpgsql STABLE;

CREATE OR REPLACE FUNCTION get_org_enabled_features(p_org_id UUID)
RETURNS TABLE(flag_key TEXT, flag_name TEXT, description TEXT) AS $$
BEGIN
  RETURN QUERY
  SELECT ff.flag_key, ff.flag_name, ff.description
  FROM feature_flags ff
  WHERE is_feature_enabled(p_org_id, ff.flag_key)
  ORDER BY ff.flag_name;
END;
$$ LANGUAGE plpgsql STABLE;

CREATE OR REPLACE FUNCTION update_feature_flag(
  p_flag_key TEXT,
  p_enabled_globally BOOLEAN DEFAULT NULL,
  p_rollout_percentage INTEGER DEFAULT NULL
) RETURNS BOOLEAN AS $$
BEGIN
  UPDATE feature_flags
  SET enabled_globally = COALESCE(p_enabled_globally, enabled_globally),
      rollout_percentage = COALESCE(p_rollout_percentage, rollout_percentage),
      updated_at = NOW()
  WHERE flag_key = p_flag_key;
  RETURN FOUND;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION log_feature_flag_change()
RETURNS TRIGGER AS $$
BEGIN
  INSERT INTO feature_flag_audit_log (flag_key, action, previous_value, new_value)
  VALUES (
    NEW.flag_key,
    CASE
      WHEN OLD.enabled_globally IS DISTINCT FROM NEW.enabled_globally THEN
        CASE WHEN NEW.enabled_globally THEN 'enabled' ELSE 'disabled' END
      ELSE 'rollout_changed'
    END,
    to_jsonb(OLD),
    to_jsonb(NEW)
  );
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER feature_flags_audit_trigger
  AFTER UPDATE ON feature_flags
  FOR EACH ROW
  EXECUTE FUNCTION log_feature_flag_change();

INSERT INTO feature_flags (flag_key, flag_name, description, enabled_globally, rollout_percentage)
VALUES
  ('outbound_calling', 'Outbound Calling', 'Outbound calling for proactive engagement', true, 100),
  ('sms_campaigns', 'SMS Campaigns', 'Bulk SMS campaigns', false, 0),
  ('lead_scoring', 'Lead Scoring', 'AI-powered lead scoring', false, 50),
  ('knowledge_base', 'Knowledge Base', 'RAG-based knowledge base', true, 100)
ON CONFLICT (flag_key) DO NOTHING;

-- The runbook's critical tables, with rows, as they stood before 20260128_create_feature_flags.
CREATE TABLE organizations (id UUID PRIMARY KEY DEFAULT gen_random_uuid(), name TEXT NOT NULL);
CREATE TABLE contacts (
  id SERIAL PRIMARY KEY,
  org_id UUID NOT NULL REFERENCES organizations(id),
  phone TEXT NOT NULL
);
CREATE TABLE appointments (
  id SERIAL PRIMARY KEY,
  org_id UUID NOT NULL REFERENCES organizations(id),
  contact_id INTEGER NOT NULL REFERENCES contacts(id),
  scheduled_at TIMESTAMPTZ NOT NULL
);
INSERT INTO organizations (name) SELECT 'clinic ' || n FROM generate_series(1, 12) AS n;
INSERT INTO contacts (org_id, phone)
  SELECT id, '+1555' || lpad(n::text, 7, '0')
  FROM organizations, generate_series(1, 40) AS n;
INSERT INTO appointments (org_id, contact_id, scheduled_at)
  SELECT org_id, id, '2026-02-01T09:00:00Z'::timestamptz + id * interval '15 minutes'
  FROM contacts WHERE id % 3 = 0;

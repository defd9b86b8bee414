#!/usr/bin/env bash
# Announce a deploy to rollback-watchdog (POST /api/deploys) so it watches it from now on.
# Run it right after the deploy went live; needs curl and jq. The environment:
#   WATCHDOG_URL            the daemon's API, e.g. https://watchdog.internal:8080
#   WATCHDOG_API_TOKEN      its api.token
#   TARGET, DEPLOYMENT_ID   the configured target and the provider's id of the deployment
# and, when known (empty or unset: left out, the daemon finds or defaults them):
#   PREVIOUS_DEPLOYMENT_ID  the known-good deployment to go back to
#   RELEASE                 the Sentry release (default: the commit)
#   COMMIT                  the commit sha deployed
#   DEPLOYED_AT             ISO 8601 with a zone (default: when the daemon hears of it)
#   MIGRATION_VERSION       the migration the deploy applies
# Prints the daemon's answer ({"watch_id": …, "state": …}); exits non-zero when it refused.
set -euo pipefail

: "${WATCHDOG_URL:?set WATCHDOG_URL to the daemon API, e.g. https://watchdog.internal:8080}"
: "${WATCHDOG_API_TOKEN:?set WATCHDOG_API_TOKEN to the daemon api.token}"
: "${TARGET:?set TARGET to a configured target, e.g. backend}"
: "${DEPLOYMENT_ID:?set DEPLOYMENT_ID to the provider id of the deployment}"

body=$(jq --null-input --compact-output \
  --arg target "$TARGET" \
  --arg deployment_id "$DEPLOYMENT_ID" \
  --arg previous_deployment_id "${PREVIOUS_DEPLOYMENT_ID:-}" \
  --arg release "${RELEASE:-}" \
  --arg commit "${COMMIT:-}" \
  --arg deployed_at "${DEPLOYED_AT:-}" \
  --arg migration_version "${MIGRATION_VERSION:-}" \
  '$ARGS.named | with_entries(select(.value != ""))')

# The token goes in through a file descriptor, never on curl's command line (ps would show it).
# Announcing twice is harmless (the same watch answers), so retrying is safe.
curl --silent --show-error --fail-with-body --retry 3 --retry-connrefused --max-time 30 \
  --request POST "${WATCHDOG_URL%/}/api/deploys" \
  --header @<(printf 'Authorization: Bearer %s\n' "$WATCHDOG_API_TOKEN") \
  --header 'Content-Type: application/json' \
  --data-binary "$body"
echo

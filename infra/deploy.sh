#!/usr/bin/env bash
# Deploy to Tencent SCF with serverless-cloud-framework (`npm i -g serverless-cloud-framework`,
# CLI `scf`): the layer first, then the functions that name its version, then the
# migrations. Run through `make deploy`, which builds dist/ first. README.md "Deploy".
set -euo pipefail
cd "$(dirname "$0")/.."

for var in STAGE TENCENTCLOUD_REGION DATABASE_URL REDIS_URL JWT_SECRET; do
  if [ -z "${!var:-}" ]; then
    echo "deploy: $var is not set (README.md, Deploy)" >&2
    exit 2
  fi
done
command -v scf >/dev/null || { echo "deploy: scf not found: npm i -g serverless-cloud-framework" >&2; exit 2; }
test -d dist/layer/content || { echo "deploy: run make package first" >&2; exit 2; }

# Every layer deploy publishes a new version and the functions must name it. With
# LAYER_VERSION set, that existing version is reused and the layer is not redeployed.
if [ -z "${LAYER_VERSION:-}" ]; then
  (cd infra/layer && scf deploy)
  LAYER_VERSION="$(cd infra/layer && scf info | sed -n 's/^[[:space:]]*version:[[:space:]]*\([0-9][0-9]*\).*/\1/p' | head -n1)"
fi
if [ -z "${LAYER_VERSION:-}" ]; then
  echo "deploy: could not read the layer version from 'scf info'; set LAYER_VERSION and rerun" >&2
  exit 2
fi
export LAYER_VERSION
echo "deploy: functions use layer ai-platform-app version $LAYER_VERSION"
scf deploy

# The schema moves with the code: apply pending migrations once, from inside the VPC.
scf invoke --function db-migrate

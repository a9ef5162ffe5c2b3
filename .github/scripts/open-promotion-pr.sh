#!/usr/bin/env bash
# Push the overlay change made by `make promote ENV=<env>` to a branch and open a
# pull request. The token comes from GH_TOKEN and is never printed or stored.
set -euo pipefail
env_name="$1"
branch="promote/${env_name}/${GITHUB_SHA:0:12}"
if git diff --quiet -- "manifests/overlays/${env_name}"; then
  echo "manifests/overlays/${env_name} already has these digests"
  exit 0
fi
git config user.name "flywheel-cd"
git config user.email "flywheel-cd@users.noreply.github.com"
git switch -c "${branch}"
git commit -q -m "Promote images to ${env_name} (${GITHUB_SHA:0:12})" -- "manifests/overlays/${env_name}"
git -c "http.extraheader=AUTHORIZATION: basic $(printf 'x-access-token:%s' "${GH_TOKEN}" | base64 -w0)" \
  push -q origin "${branch}"
gh pr create --base main --head "${branch}" \
  --title "Promote images to ${env_name}" \
  --body "Digests built and signed by the images workflow for ${GITHUB_SHA}."

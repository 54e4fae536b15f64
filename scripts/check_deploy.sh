#!/usr/bin/env bash
# Checks deploy/ offline: the rendered CloudFormation template is current and matches the Athena DDL and the binary's settings, cfn-lint and checkov are clean on it, checkov is clean on the Dockerfile.
#
# Installs the pinned cfn-lint and checkov into .venv-deploy (CHIMEWATCH_DEPLOY_VENV) when they are missing: a venv of
# their own, since checkov pins an older botocore than the suite's moto works with. Needs no AWS account
# and no network once they are installed (checkov runs with --skip-download).
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${CHIMEWATCH_DEPLOY_VENV:-.venv-deploy}"
cfn_lint_version="1.58.0"
checkov_version="3.3.30"

installed() {
  "$venv/bin/python" - "$cfn_lint_version" "$checkov_version" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(version("cfn-lint") != sys.argv[1] or version("checkov") != sys.argv[2])
PY
}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! installed; then
  echo "==> installing cfn-lint $cfn_lint_version and checkov $checkov_version into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "cfn-lint==$cfn_lint_version" "checkov==$checkov_version"
fi

template=deploy/cloudformation/chimewatch.yaml
dockerfile=deploy/container/Dockerfile

echo "==> render.py --check: $template is what base.yaml and deploy/{dashboards,alarms,athena} give"
python3 deploy/cloudformation/render.py --check

echo "==> check_glue.py: the Glue tables match deploy/athena/*.sql"
"$venv/bin/python" deploy/cloudformation/check_glue.py

echo "==> check_env.py: each task runs a real command with variables that command reads"
"$venv/bin/python" deploy/cloudformation/check_env.py

echo "==> every checkov skip in the template says why"
"$venv/bin/python" - "$template" <<'PY'
import sys
from cfnlint.decode import decode
template, errors = decode(sys.argv[1])
if errors:
    sys.exit(f"cannot read {sys.argv[1]}: {errors}")
bad = []
for name, resource in template["Resources"].items():
    for skip in (resource.get("Metadata") or {}).get("checkov", {}).get("skip", []):
        if len(str(skip.get("comment", "")).strip()) < 20:
            bad.append(f"{name}: {skip.get('id')}")
if bad:
    sys.exit("skips without a justification: " + ", ".join(bad))
print("ok")
PY

echo "==> cfn-lint $template (errors, warnings and informational)"
"$venv/bin/cfn-lint" --include-checks I -- "$template"
echo "ok"

echo "==> checkov (cloudformation) $template"
"$venv/bin/checkov" --quiet --compact --skip-download --framework cloudformation -f "$template"

echo "==> checkov (dockerfile) $dockerfile"
"$venv/bin/checkov" --quiet --compact --skip-download --framework dockerfile -f "$dockerfile"

echo "check_deploy: all deploy checks passed"

#!/usr/bin/env bash
# deploy/kubernetes checked offline (issue #34, item 5): no cluster, no network.
#
# 1. The schema: kubernetes-validate --strict (the OpenAPI schemas of each Kubernetes release, as
#    JSON Schema, shipped in the package; strict: an unknown field is an error) for Kubernetes 1.30
#    (the first with securityContext.appArmorProfile) and the newest release it knows.
# 2. What the schema cannot say (k8s_manifest.py check): the values sbx-exec needs, against the
#    image and the policy it ships, and that docs/deploy.md explains each security field.
# 3. kubectl kustomize deploy/kubernetes renders the same objects (what `kubectl apply -k` sends).
#    (kubectl's own --dry-run=client needs an API server for discovery, so it is not used.)
# 4. Controls: the manifest broken one way at a time (k8s_manifest.py mutations) must fail 1 or 2.
#
# Needs the validator's venv (.ci/run installs it: python3 -m venv /opt/sbx-k8s-validate &&
# /opt/sbx-k8s-validate/bin/pip install kubernetes-validate); without it, or without kubectl, the
# script fails under CI=true and skips otherwise.
# Run: bash tests/container/k8s.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/container/lib.sh
VENV=${SBX_K8S_VALIDATE_VENV:-/opt/sbx-k8s-validate}
KV=$VENV/bin/kubernetes-validate
PY=$VENV/bin/python3
MANIFEST=deploy/kubernetes/sbx-demo.yaml
CHECK=tests/container/k8s_manifest.py
[ -x "$KV" ] && "$PY" -c 'import yaml, tomllib' 2>/dev/null ||
    skip_or_fail "no kubernetes-validate at $VENV (python3 -m venv $VENV && $VENV/bin/pip install kubernetes-validate)"
command -v kubectl >/dev/null 2>&1 || skip_or_fail "kubectl is not installed (apt-get install kubernetes-client)"
WORK=$(mktemp -d /tmp/sbx-k8s.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

schema() { # file -> the validator's complaints, exit 1 if any
    local v out rc=0
    for v in 1.30.0 ""; do
        out=$("$KV" --strict --quiet ${v:+-k "$v"} "$1" 2>&1) || rc=1
        [ -n "$out" ] && printf '%s\n' "$out"
    done
    return $rc
}

out=$(schema "$MANIFEST") && pass "schema: $MANIFEST is valid, strictly, for Kubernetes 1.30 and $("$KV" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n 1 || echo 'the newest known')" ||
    fail "schema: $out"
out=$("$PY" "$CHECK" check "$MANIFEST" 2>&1) && pass "manifest: every value docs/deploy.md promises (capabilities, seccomp, AppArmor, hostUsers, token file, ports, service)" ||
    fail "$out"
if kubectl kustomize deploy/kubernetes >"$WORK/rendered.yaml" 2>"$WORK/kustomize.err" &&
    "$PY" -c 'import sys, yaml
a = sorted((d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(open(sys.argv[1])) if d)
b = sorted((d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(open(sys.argv[2])) if d)
sys.exit(a != b)' "$WORK/rendered.yaml" "$MANIFEST"; then
    out=$("$PY" "$CHECK" check "$WORK/rendered.yaml" 2>&1) && out=$(schema "$WORK/rendered.yaml") &&
        pass "kubectl kustomize deploy/kubernetes renders the same objects, valid and as promised" ||
        fail "kubectl kustomize output: $out"
else
    fail "kubectl kustomize deploy/kubernetes: $(cat "$WORK/kustomize.err")"
fi

# Controls: each broken copy must be refused, by the schema or by the check.
for m in $("$PY" "$CHECK" mutations); do
    "$PY" "$CHECK" mutate "$m" "$MANIFEST" "$WORK/$m.yaml"
    if s=$(schema "$WORK/$m.yaml"); then s=; fi
    if c=$("$PY" "$CHECK" check "$WORK/$m.yaml" 2>&1); then c=; fi
    if [ -n "$s$c" ]; then
        pass "control $m: refused ($(printf '%s\n%s\n' "$s" "$c" | grep -v '^$' | head -n 1 | cut -c1-160))"
    else
        fail "control $m: the broken manifest passed both the schema and the check"
    fi
done
finish k8s

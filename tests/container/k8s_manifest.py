"""What docs/deploy.md ("Kubernetes") promises of deploy/kubernetes/sbx-demo.yaml, checked offline.

    python3 k8s_manifest.py check MANIFEST          exit 0, or 1 with one line per broken promise
    python3 k8s_manifest.py mutate NAME IN OUT      write IN broken in one way (k8s.sh's controls)
    python3 k8s_manifest.py mutations               list the NAMEs

The schema (field names and types) is kubernetes-validate's job (k8s.sh runs both); this file checks
what the schema cannot: the values sbx-exec needs, read against the image and the policy it ships
(the Dockerfile's SBX_API_TOKEN_FILE, policies/sandbox-sdk.toml's control ports and stop_timeout).
Run by tests/container/k8s.sh with the validator's python (PyYAML); needs Python 3.11 (tomllib).
"""

import re
import sys
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
# What a container may add on top of the runtime's default set (docs/deploy.md, the Docker flags).
ALLOWED_CAPS = {"SYS_ADMIN"}
# The securityContext fields docs/deploy.md's Kubernetes section must explain.
DOCUMENTED = ["hostUsers", "seccompProfile", "allowPrivilegeEscalation", "capabilities",
              "procMount", "appArmorProfile", "automountServiceAccountToken",
              "terminationGracePeriodSeconds"]


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def policy():
    with open(REPO / "policies" / "sandbox-sdk.toml", "rb") as f:
        return tomllib.load(f)["context"]["control"]["supervise"]


def token_file():
    m = re.search(r"^ENV SBX_API_TOKEN_FILE=(\S+)$", (REPO / "Dockerfile").read_text(), re.M)
    return m.group(1) if m else None


def check(docs):
    errs = []
    kinds = [d.get("kind") for d in docs]
    if sorted(kinds) != ["Deployment", "Service"]:
        return ["want one Deployment and one Service, found %s" % kinds]
    dep = next(d for d in docs if d["kind"] == "Deployment")
    svc = next(d for d in docs if d["kind"] == "Service")
    pod = dep["spec"]["template"]["spec"]
    sup = policy()

    if pod.get("hostUsers") is not True:
        errs.append("hostUsers must be true: a pod's user namespace has 65536 ids, and the "
                    "identity contexts need uid 100000..165535")
    if pod.get("automountServiceAccountToken") is not False:
        errs.append("automountServiceAccountToken must be false (no API token in the pod)")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if not grace > sup["stop_timeout"]:
        errs.append("terminationGracePeriodSeconds %s must exceed the control context's "
                    "stop_timeout %s" % (grace, sup["stop_timeout"]))
    for key in ("hostPID", "hostIPC", "hostNetwork"):
        if pod.get(key):
            errs.append("%s must not be set" % key)

    ctrs = pod.get("containers", [])
    if len(ctrs) != 1:
        return errs + ["want one container, found %d" % len(ctrs)]
    c = ctrs[0]
    if "command" in c or "args" in c:
        errs.append("command/args override the image's ENTRYPOINT (sbx-exec --ctx control) or CMD")
    ports = sorted(p["containerPort"] for p in c.get("ports", []))
    if ports != sorted(sup["ports"]):
        errs.append("containerPorts %s, the control context holds %s" % (ports, sup["ports"]))

    pod_sc = pod.get("securityContext", {})
    sc = c.get("securityContext", {})
    seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
    if seccomp != "RuntimeDefault":
        errs.append("seccompProfile must be RuntimeDefault (the kubelet's default is Unconfined), "
                    "found %s" % seccomp)
    if sc.get("privileged"):
        errs.append("privileged must not be set")
    if sc.get("allowPrivilegeEscalation") is False:
        errs.append("allowPrivilegeEscalation must stay true (refused by the API with SYS_ADMIN, "
                    "and control's no_new_privs = false)")
    if sc.get("runAsUser", pod_sc.get("runAsUser", 0)) != 0 or sc.get("runAsNonRoot"):
        errs.append("sbx-exec must run as root in the container (runAsUser 0, runAsNonRoot false)")
    caps = sc.get("capabilities", {})
    add, drop = set(caps.get("add", [])), set(caps.get("drop", []))
    if "SYS_ADMIN" not in add:
        errs.append("capabilities.add must include SYS_ADMIN")
    if add - ALLOWED_CAPS:
        errs.append("capabilities.add has more than docs/deploy.md explains: %s"
                    % sorted(add - ALLOWED_CAPS))
    if drop & (add | {"ALL"}):
        errs.append("capabilities.drop removes what sbx-exec needs: %s" % sorted(drop))
    if sc.get("procMount", "Default") != "Default":
        errs.append("procMount Unmasked needs hostUsers: false (not this deployment)")
    aa = (sc.get("appArmorProfile") or pod_sc.get("appArmorProfile") or {}).get("type")
    if aa not in ("Unconfined", "Localhost"):
        errs.append("appArmorProfile must be Unconfined or a Localhost profile that allows mount "
                    "(the runtime's default denies it), found %s" % aa)

    # The API token: a 0400-ish file at the image's SBX_API_TOKEN_FILE, from a Secret.
    want = token_file()
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    found = False
    for m in c.get("volumeMounts", []):
        sec = vols.get(m["name"], {}).get("secret")
        if not sec:
            continue
        for item in sec.get("items", []):
            if m["mountPath"].rstrip("/") + "/" + item["path"] == want:
                found = True
                mode = item.get("mode", sec.get("defaultMode", 0o644))
                if mode & 0o077:
                    errs.append("the token file's mode %o lets group or others read it (the "
                                "server refuses to start)" % mode)
                if not m.get("readOnly"):
                    errs.append("the token's mount must be readOnly")
    if not found:
        errs.append("no Secret item mounted at SBX_API_TOKEN_FILE %s" % want)
    env = {e["name"]: e for e in c.get("env", [])}
    jt = env.get("JUPYTER_TOKEN", {})
    if "secretKeyRef" not in jt.get("valueFrom", {}):
        errs.append("JUPYTER_TOKEN must come from a Secret (secretKeyRef), never a literal")

    if svc["spec"].get("type", "ClusterIP") != "ClusterIP":
        errs.append("the Service must be ClusterIP (inside the cluster only), found %s"
                    % svc["spec"]["type"])
    labels = dep["spec"]["template"]["metadata"].get("labels", {})
    sel = svc["spec"].get("selector", {})
    if not sel or any(labels.get(k) != v for k, v in sel.items()):
        errs.append("the Service's selector %s does not select the pod (%s)" % (sel, labels))
    if sorted(p["port"] for p in svc["spec"].get("ports", [])) != sorted(sup["ports"]):
        errs.append("the Service's ports are not the control context's %s" % sup["ports"])

    section = (REPO / "docs" / "deploy.md").read_text().partition("\n## Kubernetes")[2]
    section = section.split("\n## ", 1)[0]
    for field in DOCUMENTED:
        if "`" + field not in section:
            errs.append("docs/deploy.md's Kubernetes section does not explain `%s`" % field)
    return errs


def _ctr(d):
    return d["spec"]["template"]["spec"]["containers"][0]


def _dep(docs):
    return next(d for d in docs if d["kind"] == "Deployment")


def _set(path, value):
    def f(docs):
        node = _dep(docs)
        *head, last = path
        for k in head:
            node = node[k] if not isinstance(node, list) else node[int(k)]
        node[last] = value
    return f


def _caps(docs):
    _ctr(_dep(docs))["securityContext"]["capabilities"]["add"].remove("SYS_ADMIN")


def _extra_cap(docs):
    _ctr(_dep(docs))["securityContext"]["capabilities"]["add"].append("SYS_MODULE")


def _command(docs):
    _ctr(_dep(docs))["command"] = ["bun", "run", "server.ts"]


def _token_mode(docs):
    _dep(docs)["spec"]["template"]["spec"]["volumes"][0]["secret"]["defaultMode"] = 0o644


def _literal_jupyter_token(docs):
    _ctr(_dep(docs))["env"][0] = {"name": "JUPYTER_TOKEN", "value": "not-a-secret"}


def _service(docs):
    next(d for d in docs if d["kind"] == "Service")["spec"]["type"] = "LoadBalancer"


def _unknown_field(docs):
    _ctr(_dep(docs))["securityContext"]["capabilites"] = {"add": ["SYS_ADMIN"]}


def _port(docs):
    _ctr(_dep(docs))["ports"].pop()


CT = ["spec", "template", "spec", "containers", "0", "securityContext"]
MUTATIONS = {
    # Caught by the schema (kubernetes-validate --strict):
    "unknown-field": _unknown_field,
    "hostUsers-string": _set(["spec", "template", "spec", "hostUsers"], "false"),
    "grace-string": _set(["spec", "template", "spec", "terminationGracePeriodSeconds"], "15s"),
    # Caught by check():
    "no-sys-admin": _caps,
    "extra-cap": _extra_cap,
    "no-privilege-escalation": _set(CT + ["allowPrivilegeEscalation"], False),
    "seccomp-unconfined": _set(["spec", "template", "spec", "securityContext", "seccompProfile"],
                               {"type": "Unconfined"}),
    "apparmor-default": _set(CT + ["appArmorProfile"], {"type": "RuntimeDefault"}),
    "host-users-false": _set(["spec", "template", "spec", "hostUsers"], False),
    "proc-unmasked": _set(CT + ["procMount"], "Unmasked"),
    "entrypoint-override": _command,
    "token-mode": _token_mode,
    "literal-jupyter-token": _literal_jupyter_token,
    "service-exposed": _service,
    "port-missing": _port,
    "short-grace": _set(["spec", "template", "spec", "terminationGracePeriodSeconds"], 5),
    "non-root": _set(CT + ["runAsUser"], 1000),
}


def main(argv):
    if argv[:1] == ["check"] and len(argv) == 2:
        errs = check(load(argv[1]))
        for e in errs:
            print("manifest: " + e)
        return 1 if errs else 0
    if argv[:1] == ["mutations"]:
        print(" ".join(MUTATIONS))
        return 0
    if argv[:1] == ["mutate"] and len(argv) == 4:
        docs = load(argv[2])
        MUTATIONS[argv[1]](docs)
        with open(argv[3], "w") as f:
            yaml.safe_dump_all(docs, f, sort_keys=False)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

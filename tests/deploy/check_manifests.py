#!/usr/bin/env python3
"""Checks deploy/*.yaml as Kubernetes objects: every document parses and has
the fields the API server requires, and the DaemonSet holds together (selector
matches the template, every volumeMount has a volume, the host paths the daemon
needs are mounted, the example Pod's node affinity uses the label the
DaemonSet selects on).

  check_manifests.py DEPLOY_DIR
"""
import os
import sys

import yaml

errors = []


def need(cond, what):
    if not cond:
        errors.append(what)


def check_meta(doc, where):
    need(isinstance(doc.get("apiVersion"), str) and doc["apiVersion"], f"{where}: apiVersion")
    need(isinstance(doc.get("kind"), str) and doc["kind"], f"{where}: kind")
    meta = doc.get("metadata") or {}
    need(isinstance(meta.get("name"), str) and meta["name"], f"{where}: metadata.name")


def check_pod_spec(spec, where):
    containers = spec.get("containers") or []
    need(containers, f"{where}: spec.containers is empty")
    volumes = {v.get("name") for v in spec.get("volumes") or []}
    for c in containers:
        need(c.get("name") and c.get("image"), f"{where}: container needs name and image")
        for m in c.get("volumeMounts") or []:
            need(m.get("name") in volumes, f"{where}: volumeMount {m.get('name')} has no volume")
            need(str(m.get("mountPath", "")).startswith("/"), f"{where}: mountPath must be absolute")
    return containers


def main():
    deploy = sys.argv[1]
    docs = []
    for name in sorted(os.listdir(deploy)):
        if name.endswith(".yaml"):
            with open(os.path.join(deploy, name)) as f:
                for i, doc in enumerate(yaml.safe_load_all(f)):
                    if doc is not None:
                        docs.append((f"{name}#{i}", doc))
    need(docs, "no manifests found")
    kinds = {}
    for where, doc in docs:
        check_meta(doc, where)
        kinds.setdefault(doc.get("kind"), []).append((where, doc))
    for kind in ("Namespace", "ConfigMap", "DaemonSet", "Pod"):
        need(kind in kinds, f"missing a {kind}")
    node_label = None
    for where, ds in kinds.get("DaemonSet", []):
        spec = ds.get("spec") or {}
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        tmpl = spec.get("template") or {}
        labels = (tmpl.get("metadata") or {}).get("labels") or {}
        need(selector and all(labels.get(k) == v for k, v in selector.items()),
             f"{where}: selector does not match the template labels")
        pod = tmpl.get("spec") or {}
        containers = check_pod_spec(pod, where)
        need(any((c.get("securityContext") or {}).get("privileged") for c in containers),
             f"{where}: the daemon must be privileged (FUSE and overlay mounts)")
        paths = {(v.get("hostPath") or {}).get("path") for v in pod.get("volumes") or []}
        for p in ("/dev/fuse", "/run/accel-snapshotter",
                  "/var/lib/containerd/io.containerd.snapshotter.v1.accel", "/mnt/accel-store"):
            need(p in paths, f"{where}: host path {p} is not mounted")
        mounts = {m["name"]: m for c in containers for m in c.get("volumeMounts") or []}
        need((mounts.get("state") or {}).get("mountPropagation") == "Bidirectional",
             f"{where}: the state dir needs Bidirectional propagation (FUSE mounts must reach the host)")
        sel = pod.get("nodeSelector") or {}
        node_label = next(iter(sel), None)
        need(node_label == "accel.containerd.io/enabled", f"{where}: nodeSelector label")
        cm_names = {d["metadata"]["name"] for _, d in kinds.get("ConfigMap", [])}
        for v in pod.get("volumes") or []:
            if "configMap" in v:
                need(v["configMap"].get("name") in cm_names, f"{where}: configMap volume names no ConfigMap")
    for where, cm in kinds.get("ConfigMap", []):
        toml = (cm.get("data") or {}).get("config.toml", "")
        need("address" in toml and "store" in toml, f"{where}: config.toml lacks address/store")
    for where, pod in kinds.get("Pod", []):
        spec = pod.get("spec") or {}
        check_pod_spec(spec, where)
        terms = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                 .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or []
        keys = {e.get("key") for t in terms for e in t.get("matchExpressions") or []}
        need(node_label in keys, f"{where}: node affinity does not require {node_label}")
    if errors:
        for e in errors:
            print("FAIL:", e)
        sys.exit(1)
    print(f"ok: {len(docs)} manifests")


if __name__ == "__main__":
    main()

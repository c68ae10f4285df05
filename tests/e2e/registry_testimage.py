#!/usr/bin/env python3
"""Writes a small OCI image layout for the registry tests.

  registry_testimage.py DIR TAG [--platforms linux/amd64,linux/arm64]
                        [--layers 2] [--layer-size BYTES] [--seed S]

One platform gives DIR:TAG as an image manifest; several give an image
index with one manifest per platform. Layers are gzip'd tars holding one
file of pseudo-random (incompressible) bytes, so sizes are predictable.
Push it with: skopeo copy --all oci:DIR:TAG docker://HOST/REPO:TAG
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import random
import tarfile


def put_blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return "sha256:" + digest


def make_layer(rng, name, size):
    payload = bytes(rng.getrandbits(8) for _ in range(size))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    tar_bytes = raw.getvalue()
    gz = gzip.compress(tar_bytes, mtime=0)
    return gz, "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("tag")
    ap.add_argument("--platforms", default="linux/amd64")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--layer-size", type=int, default=4096)
    ap.add_argument("--seed", default="accel")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    os.makedirs(os.path.join(a.dir, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(a.dir, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    manifests = []
    for plat in a.platforms.split(","):
        parts = plat.split("/")
        layers, diff_ids = [], []
        for i in range(a.layers):
            gz, diff_id = make_layer(rng, "file-%s-%d" % (parts[1], i), a.layer_size)
            layers.append({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": put_blob(a.dir, gz), "size": len(gz),
                "annotations": {"org.example.layer": str(i)},
            })
            diff_ids.append(diff_id)
        config = {"architecture": parts[1], "os": parts[0],
                  "rootfs": {"type": "layers", "diff_ids": diff_ids},
                  "config": {"Cmd": ["/bin/true"]}}
        if len(parts) > 2:
            config["variant"] = parts[2]
        cfg = json.dumps(config, sort_keys=True).encode()
        manifest = {"schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": put_blob(a.dir, cfg), "size": len(cfg)},
                    "layers": layers}
        mb = json.dumps(manifest, sort_keys=True).encode()
        platform = {"os": parts[0], "architecture": parts[1]}
        if len(parts) > 2:
            platform["variant"] = parts[2]
        manifests.append({"mediaType": manifest["mediaType"], "digest": put_blob(a.dir, mb),
                          "size": len(mb), "platform": platform})
    if len(manifests) == 1:
        top = dict(manifests[0])
        del top["platform"]
    else:
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": manifests}
        ib = json.dumps(index, sort_keys=True).encode()
        top = {"mediaType": index["mediaType"], "digest": put_blob(a.dir, ib), "size": len(ib)}
    top["annotations"] = {"org.opencontainers.image.ref.name": a.tag}
    path = os.path.join(a.dir, "index.json")
    existing = {"schemaVersion": 2, "manifests": []}
    if os.path.exists(path):
        with open(path) as f:
            existing = json.load(f)
    existing["manifests"] = [m for m in existing["manifests"]
                             if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != a.tag]
    existing["manifests"].append(top)
    with open(path, "w") as f:
        json.dump(existing, f)
    print(top["digest"])


if __name__ == "__main__":
    main()

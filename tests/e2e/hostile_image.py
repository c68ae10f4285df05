#!/usr/bin/env python3
"""Writes an OCI image layout of hostile one-layer images, one tag each:

  dotdot           a member named "a/../../escaped"
  absolute         a member named "/etc/escaped"
  hardlink-escape  a hard link to "../../etc/shadow"
  truncated-gzip   a gzip layer cut in half (its blob digest matches the cut bytes)
  wrong-diffid     a good layer whose config lists another diff id

  hostile_image.py DIR
Push with: skopeo copy oci:DIR:TAG docker://HOST/REPO:TAG
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile


def put_blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest


def tar_of(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, extra in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1600000000
            if kind == "file":
                info.size = len(extra)
                tf.addfile(info, io.BytesIO(extra))
            elif kind == "link":
                info.type = tarfile.LNKTYPE
                info.linkname = extra
                tf.addfile(info)
    return buf.getvalue()


def image(layout, tag, layer_blob, diff_id):
    layer_digest = put_blob(layout, layer_blob)
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }).encode()
    config_digest = put_blob(layout, config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest, "size": len(layer_blob)}],
    }).encode()
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": put_blob(layout, manifest), "size": len(manifest),
            "annotations": {"org.opencontainers.image.ref.name": tag}}


def main():
    layout = sys.argv[1]
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    good = tar_of([("ok", "file", b"fine\n")])
    cases = {
        "dotdot": tar_of([("a/../../escaped", "file", b"x")]),
        "absolute": tar_of([("/etc/escaped", "file", b"x")]),
        "hardlink-escape": tar_of([("h", "link", "../../etc/shadow")]),
    }
    entries = []
    for tag, tar in cases.items():
        entries.append(image(layout, tag, gzip.compress(tar, mtime=0), "sha256:" + hashlib.sha256(tar).hexdigest()))
    big = tar_of([("big", "file", os.urandom(256 << 10))])
    gz = gzip.compress(big, mtime=0)
    entries.append(image(layout, "truncated-gzip", gz[: len(gz) // 2], "sha256:" + hashlib.sha256(big).hexdigest()))
    entries.append(image(layout, "wrong-diffid", gzip.compress(good, mtime=0),
                         "sha256:" + hashlib.sha256(b"something else").hexdigest()))
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": entries}, f)


if __name__ == "__main__":
    main()

#pragma once

// Names that cross module and process boundaries as strings: snapshot labels
// containerd passes to the snapshotter, layer annotations images carry,
// content labels containerd's garbage collector reads, and the media types
// of the OCI and Docker image formats. One place, so a converter, the
// snapshotter and accelctl cannot drift apart.
//
// containerd hands a layer's annotations whose names start with
// kSnapshotLabelPrefix to the snapshotter as labels of the layer's Prepare,
// so every annotation accel reads on the node has that prefix.

namespace accel {

// --- Snapshot labels (containerd -> snapshotter) ---------------------------

// Set on Prepare when the caller (containerd's unpacker, the CRI plugin,
// ctr-remote, accelctl pull) allows a remote snapshot; the value is the name
// the layer's committed snapshot should get (its chain id).
inline constexpr char kTargetRefLabel[] = "containerd.io/snapshot.ref";
// Labels containerd passes on from layer annotations carry this prefix.
inline constexpr char kSnapshotLabelPrefix[] = "containerd.io/snapshot/";
// What containerd's CRI plugin (and accelctl pull) set on each layer's
// Prepare: the image reference, the layer blob's digest, and the digests of
// the layers from this one up (as many as fit a label).
inline constexpr char kCriRefLabel[] = "containerd.io/snapshot/cri.image-ref";
inline constexpr char kCriDigestLabel[] = "containerd.io/snapshot/cri.layer-digest";
inline constexpr char kCriImageLayersLabel[] = "containerd.io/snapshot/cri.image-layers";
// What ctr-remote (stargz-snapshotter's client) sets instead of the CRI
// labels: the image reference and the layer blob's digest.
inline constexpr char kStargzRefLabel[] = "containerd.io/snapshot/remote/stargz.reference";
inline constexpr char kStargzDigestLabel[] = "containerd.io/snapshot/remote/stargz.digest";
// containerd's bound on a label's key plus value, in bytes.
inline constexpr unsigned kMaxLabelBytes = 4096;

// --- Labels accel records on its committed snapshots -----------------------

// What serves a committed remote snapshot ("store", "estargz"); the
// snapshotter reads it back on restore.
inline constexpr char kRemoteKindLabel[] = "containerd.io/snapshot/accel.remote";

// --- Layer annotations (image -> snapshot labels) --------------------------

// A target image's layer (accelctl convert): the layer's diff id, which
// names it in the shared store, and the id of the store it was put in.
inline constexpr char kStoreLayerLabel[] = "containerd.io/snapshot/accel.diff-id";
inline constexpr char kStoreIdLabel[] = "containerd.io/snapshot/accel.store-id";
// An eStargz layer: the digest of its TOC (what a lazy mount verifies).
inline constexpr char kTocDigestAnnotation[] = "containerd.io/snapshot/stargz/toc.digest";
// An eStargz layer: the size of the layer uncompressed.
inline constexpr char kUncompressedSizeAnnotation[] = "io.containers.estargz.uncompressed-size";

// --- Content and lease labels (client -> containerd) ----------------------

// On a lease: when containerd may collect it (RFC 3339).
inline constexpr char kGcExpireLabel[] = "containerd.io/gc.expire";
// On any object: keeps it from collection.
inline constexpr char kGcRootLabel[] = "containerd.io/gc.root";
// On a compressed layer blob: the diff id it unpacked to.
inline constexpr char kUncompressedLabel[] = "containerd.io/uncompressed";
// References that keep what an object points at from collection: append
// the snapshotter name, an index, or nothing as containerd's clients do.
inline constexpr char kGcRefSnapshotPrefix[] = "containerd.io/gc.ref.snapshot.";
inline constexpr char kGcRefContentConfig[] = "containerd.io/gc.ref.content.config";
inline constexpr char kGcRefContentLayerPrefix[] = "containerd.io/gc.ref.content.l.";
inline constexpr char kGcRefContentManifestPrefix[] = "containerd.io/gc.ref.content.m.";

// --- Media types -----------------------------------------------------------

namespace media {
inline constexpr char kOciManifest[] = "application/vnd.oci.image.manifest.v1+json";
inline constexpr char kOciIndex[] = "application/vnd.oci.image.index.v1+json";
inline constexpr char kOciConfig[] = "application/vnd.oci.image.config.v1+json";
inline constexpr char kOciLayer[] = "application/vnd.oci.image.layer.v1.tar";
inline constexpr char kOciLayerGzip[] = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr char kOciLayerZstd[] = "application/vnd.oci.image.layer.v1.tar+zstd";
inline constexpr char kOciLayerNondistributable[] =
    "application/vnd.oci.image.layer.nondistributable.v1.tar";
inline constexpr char kOciLayerNondistributableGzip[] =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
inline constexpr char kOciLayerNondistributableZstd[] =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
inline constexpr char kDockerManifest[] = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr char kDockerManifestList[] =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr char kDockerConfig[] = "application/vnd.docker.container.image.v1+json";
inline constexpr char kDockerLayer[] = "application/vnd.docker.image.rootfs.diff.tar";
inline constexpr char kDockerLayerGzip[] = "application/vnd.docker.image.rootfs.diff.tar.gzip";
inline constexpr char kDockerForeignLayerGzip[] =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
// Accept header for manifest requests: every kind the registry client parses.
inline constexpr char kManifestAccept[] =
    "application/vnd.oci.image.index.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.v2+json";
}  // namespace media

}  // namespace accel

// accelctl pull: pulls an image into containerd through a snapshotter
// (accel by default), as containerd's own pull would, but asking the
// snapshotter first for each layer: layers it can mount remotely (from the
// shared store, or lazily as eStargz) are never downloaded; the others are
// downloaded into containerd's content store and unpacked with its diff
// service.

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "accelctl/commands.h"
#include "accelctl/containerd_client.h"
#include "accelctl/pull_interrupt.h"
#include "accelctl/pull_prefetch.h"
#include "accelctl/registry_flags.h"
#include "common/chain_id.h"
#include "common/labels.h"
#include "common/progress.h"
#include "common/random.h"
#include "common/status_macros.h"
#include "registry/client.h"
#include "registry/manifest.h"
#include "registry/reference.h"

namespace accel::ctl {
namespace {

namespace snapspb = ::containerd::services::snapshots::v1;

using registry::Client;
using registry::Descriptor;
using registry::Reference;

constexpr char kPullUsage[] =
    R"(Usage: accelctl pull [--address SOCKET] [--namespace NS] [--snapshotter NAME]
                     [--platform OS/ARCH[/VARIANT]] [registry flags] REF

Pulls image REF into containerd and unpacks it for snapshotter NAME, layer
by layer from the bottom. Each layer is first offered to the snapshotter:
layers it mounts remotely (converted into accel's store, or eStargz) are
not downloaded; the others are downloaded into containerd's content store
and unpacked there. The image record REF then points at the manifest, so
'ctr run --snapshotter NAME REF' starts it. Layers to download are
fetched --parallel at a time while the ones below them are unpacked. One
line per layer on stdout, and a byte counter on a terminal. Interrupted
(Ctrl-C, SIGTERM), it deletes its lease so containerd removes what it wrote.

  --address SOCKET   containerd's socket ($CONTAINERD_ADDRESS, else
                     /run/containerd/containerd.sock)
  --namespace NS     containerd namespace ($CONTAINERD_NAMESPACE, else default)
  --snapshotter NAME snapshotter to unpack for (default accel)
  --platform P       platform to pick from an index (default: this host's)
  --parallel N       layer downloads at once, 1-16 (default 3)

)";

struct PullOptions {
  std::string snapshotter;
  std::string name;  // image record name (REF, normalized)
  registry::Platform platform;
  int parallel = 3;  // concurrent layer downloads
};

// True if the manifest marks the layer for a remote snapshotter (accel's
// store annotations, eStargz's TOC digest): such a layer is offered to the
// snapshotter before anything is downloaded.
bool HintedRemote(const Descriptor& layer) {
  for (const auto& [k, v] : layer.annotations) {
    if (absl::StartsWith(k, kSnapshotLabelPrefix)) return true;
  }
  return false;
}

// The value of cri.image-layers for layer i, as containerd's CRI plugin
// builds it: the digests from layer i upward, as many as fit containerd's
// limit of 4096 bytes for a label's key and value.
std::string ImageLayersLabel(const std::vector<Descriptor>& layers, size_t i) {
  std::string out;
  for (size_t k = i; k < layers.size(); ++k) {
    const size_t add = layers[k].digest.size() + (out.empty() ? 0 : 1);
    if (std::strlen(kCriImageLayersLabel) + out.size() + add > kMaxLabelBytes) break;
    if (!out.empty()) out += ',';
    out += layers[k].digest;
  }
  return out;
}

absl::Status Pull(Client& client, Containerd& ctd, const Reference& ref, const PullOptions& opts,
                  Progress& progress) {
  ACCEL_ASSIGN_OR_RETURN(Client::ResolvedImage image, client.ResolveImage(ref, opts.platform));
  const registry::Manifest& manifest = image.parsed;
  ACCEL_ASSIGN_OR_RETURN(std::string config, client.FetchBlobBytes(ref, manifest.config));
  ACCEL_ASSIGN_OR_RETURN(std::vector<std::string> diff_ids,
                         registry::ConfigDiffIds(config, manifest));
  const size_t n = manifest.layers.size();
  const std::vector<std::string> chains = ChainIds(diff_ids);
  progress.Line(absl::StrCat("pulling ", ref.String(), " (", image.manifest.descriptor.digest,
                             "): ", n, " layer(s) for snapshotter ", opts.snapshotter));

  // The highest layer already unpacked (its whole chain is then there). The
  // first Stat also fails early, with a clear message, when the snapshotter
  // is not there.
  size_t have = 0;
  for (size_t i = n; i > 0; --i) {
    ACCEL_ASSIGN_OR_RETURN(bool exists, ctd.SnapshotExists(opts.snapshotter, chains[i - 1]));
    if (exists) {
      have = i;
      break;
    }
  }

  ACCEL_RETURN_IF_ERROR(ctd.CreateLease());
  // What is already unpacked stays while the lease lives (a parent holds
  // nothing, its child holds it).
  if (have > 0) {
    absl::Status s = ctd.LeaseSnapshot(opts.snapshotter, chains[have - 1]);
    if (absl::IsNotFound(s))
      have = 0;  // removed meanwhile: unpack it again
    else
      ACCEL_RETURN_IF_ERROR(s);
  }

  // Layers that are not marked for a remote snapshotter will be downloaded:
  // start on them now, while the layers below are being prepared.
  Prefetcher prefetcher(client, ctd, ref, manifest.layers, opts.parallel, progress);
  for (size_t i = have; i < n; ++i) {
    if (!HintedRemote(manifest.layers[i])) prefetcher.Queue(i);
  }

  for (size_t i = 0; i < n; ++i) {
    const Descriptor& layer = manifest.layers[i];
    const std::string& chain = chains[i];
    const std::string parent = i == 0 ? "" : chains[i - 1];
    std::string prefix = absl::StrCat("layer ", i + 1, "/", n, " ", layer.digest, " ");
    if (i < have) {
      progress.Line(absl::StrCat(prefix, "already unpacked"));
      continue;
    }
    const std::string key = absl::StrCat("extract-", RandomHex(8), " ", chain);
    snapspb::PrepareSnapshotRequest prep;
    prep.set_snapshotter(opts.snapshotter);
    prep.set_key(key);
    prep.set_parent(parent);
    auto& labels = *prep.mutable_labels();
    for (const auto& [k, v] : layer.annotations) {
      if (absl::StartsWith(k, kSnapshotLabelPrefix)) labels[k] = v;
    }
    labels[kTargetRefLabel] = chain;
    labels[kCriRefLabel] = ref.String();
    labels[kCriDigestLabel] = layer.digest;
    labels[kCriImageLayersLabel] = ImageLayersLabel(manifest.layers, i);
    snapspb::PrepareSnapshotResponse prepared;
    grpc::Status ps = ctd.Prepare(prep, prepared);
    if (ps.error_code() == grpc::StatusCode::ALREADY_EXISTS) {
      // The snapshotter mounted it, or (for a layer nothing marks as remote)
      // another pull committed it since the Stat above.
      progress.Line(absl::StrCat(
          prefix, HintedRemote(layer) ? "mounted remotely" : "unpacked by another pull meanwhile"));
      continue;
    }
    ACCEL_RETURN_IF_ERROR(SnapshotterError(
        ps, opts.snapshotter, absl::StrCat("prepare snapshot for layer ", layer.digest)));
    if (HintedRemote(layer)) {
      // Marked for a remote snapshotter but declined (store or registry not
      // reachable from the daemon, say): the ones above likely will be too.
      prefetcher.Queue(i);  // first in line
      for (size_t k = i + 1; k < n; ++k) prefetcher.Queue(k);
    }
    bool raced = false;
    absl::Status s = [&]() -> absl::Status {
      ACCEL_RETURN_IF_ERROR(prefetcher.Wait(i));
      ACCEL_ASSIGN_OR_RETURN(std::string applied, ctd.Apply(layer, prepared.mounts()));
      if (applied != diff_ids[i]) {
        return absl::DataLossError(absl::StrCat("layer ", layer.digest, " unpacked to ", applied,
                                                ", but the config says ", diff_ids[i]));
      }
      // Recorded as containerd's unpacker does.
      ACCEL_RETURN_IF_ERROR(ctd.LabelBlob(layer.digest, {{kUncompressedLabel, applied}}));
      absl::Status committed = ctd.Commit(opts.snapshotter, chain, key);
      if (absl::IsAlreadyExists(committed)) {
        raced = true;  // another pull unpacked it first: use theirs
        return absl::OkStatus();
      }
      return committed;
    }();
    if (!s.ok() || raced) ctd.Remove(opts.snapshotter, key);
    ACCEL_RETURN_IF_ERROR(s);
    progress.Step();
    progress.Line(absl::StrCat(
        prefix, raced ? "unpacked by another pull meanwhile" : "downloaded and unpacked", " (",
        absl::StrFormat("%.1f", layer.size / 1048576.0), " MiB)"));
  }

  // The config, then the manifest, with the labels that keep what they
  // reference from containerd's garbage collection once the lease is gone.
  auto bytes_of = [](const std::string& b) {
    return [&b](const std::function<absl::Status(absl::string_view)>& sink) { return sink(b); };
  };
  ACCEL_RETURN_IF_ERROR(ctd.WriteBlob(manifest.config, bytes_of(config)).status());
  if (n > 0) {
    ACCEL_RETURN_IF_ERROR(
        ctd.LabelBlob(manifest.config.digest,
                      {{absl::StrCat(kGcRefSnapshotPrefix, opts.snapshotter), chains.back()}}));
  }
  std::map<std::string, std::string> manifest_labels = {
      {kGcRefContentConfig, manifest.config.digest}};
  for (size_t i = 0; i < n; ++i) {
    manifest_labels[absl::StrCat(kGcRefContentLayerPrefix, i)] = manifest.layers[i].digest;
  }
  const Descriptor& md = image.manifest.descriptor;
  ACCEL_RETURN_IF_ERROR(ctd.WriteBlob(md, bytes_of(image.manifest.bytes)).status());
  ACCEL_RETURN_IF_ERROR(ctd.LabelBlob(md.digest, manifest_labels));
  Descriptor target = md;
  if (image.index) {
    // Keep the index as the image's target, as containerd does.
    const Descriptor& id = image.index->descriptor;
    ACCEL_RETURN_IF_ERROR(ctd.WriteBlob(id, bytes_of(image.index->bytes)).status());
    ACCEL_RETURN_IF_ERROR(
        ctd.LabelBlob(id.digest, {{absl::StrCat(kGcRefContentManifestPrefix, 0), md.digest}}));
    target = id;
  }
  ACCEL_RETURN_IF_ERROR(ctd.PutImage(opts.name, target));
  return absl::OkStatus();
}

}  // namespace

int RunPull(const Args& args) {
  RegistryFlags rf;
  const char* env_address = std::getenv("CONTAINERD_ADDRESS");
  const char* env_ns = std::getenv("CONTAINERD_NAMESPACE");
  std::string address =
      env_address && *env_address ? env_address : "/run/containerd/containerd.sock";
  std::string ns = env_ns && *env_ns ? env_ns : "default";
  std::string snapshotter = "accel";
  std::string platform_text;
  std::string parallel_text = "3";
  std::vector<std::string> refs;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    std::string error;
    if (a == "-h" || a == "--help") {
      std::printf("%s%s", kPullUsage, kRegistryFlagsUsage);
      return 0;
    } else if (ConsumeValueFlag(args, i, "--address", address, error) ||
               ConsumeValueFlag(args, i, "--namespace", ns, error) ||
               ConsumeValueFlag(args, i, "--snapshotter", snapshotter, error) ||
               ConsumeValueFlag(args, i, "--platform", platform_text, error) ||
               ConsumeValueFlag(args, i, "--parallel", parallel_text, error) ||
               ConsumeRegistryFlag(args, i, rf, error)) {
      if (!error.empty()) return Fail(absl::StrCat("pull: ", error), 2);
    } else if (!a.empty() && a[0] == '-') {
      return Fail(absl::StrCat("pull: unknown flag \"", a, "\" (see --help)"), 2);
    } else {
      refs.push_back(a);
    }
  }
  if (refs.size() != 1) return Fail("pull: want exactly one image reference (see --help)", 2);
  if (address.empty() || ns.empty() || snapshotter.empty()) {
    return Fail("pull: --address, --namespace and --snapshotter must not be empty", 2);
  }
  absl::StatusOr<Reference> ref = registry::ParseReference(refs[0]);
  if (!ref.ok()) return Fail(absl::StrCat("pull: ", ref.status().message()), 2);
  PullOptions opts;
  opts.snapshotter = snapshotter;
  opts.name = ref->String();
  if (!absl::SimpleAtoi(parallel_text, &opts.parallel) || opts.parallel < 1 || opts.parallel > 16) {
    return Fail(
        absl::StrCat("pull: --parallel wants a number from 1 to 16, not \"", parallel_text, "\""),
        2);
  }
  opts.platform = registry::DefaultPlatform();
  if (!platform_text.empty()) {
    absl::StatusOr<registry::Platform> p = registry::ParsePlatform(platform_text);
    if (!p.ok()) return Fail(absl::StrCat("pull: ", p.status().message()), 2);
    opts.platform = *p;
  }
  LeaseBox lease_box;
  InterruptCleanup interrupt(address, ns, lease_box);
  // As many registry transfers at once as download workers.
  absl::StatusOr<std::unique_ptr<Client>> client = MakeRegistryClient(rf, opts.parallel);
  if (!client.ok()) return Fail(absl::StrCat("pull: ", client.status().message()));
  Containerd ctd(address, ns, &lease_box);
  if (absl::Status s = ctd.Connect(); !s.ok()) return Fail(absl::StrCat("pull: ", s.message()));
  absl::Time start = absl::Now();
  Progress progress(::isatty(STDOUT_FILENO) == 1);
  absl::Status s = Pull(**client, ctd, *ref, opts, progress);
  // Interrupted: the handler's thread deletes the lease and exits; what
  // failed here meanwhile (the lease vanished) is not news.
  while (lease_box.interrupted()) absl::SleepFor(absl::Seconds(1));
  progress.Finish();
  ctd.DeleteLease();
  if (!s.ok()) return Fail(absl::StrCat("pull: ", s.message()));
  std::printf("pulled %s in %.1fs\n", opts.name.c_str(),
              absl::ToDoubleSeconds(absl::Now() - start));
  return 0;
}

}  // namespace accel::ctl

// accelctl copy: copies an image (an index with all its platforms, or one
// platform) from one registry or repository to another.

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <set>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "accelctl/commands.h"
#include "accelctl/registry_flags.h"
#include "accelctl/transfer.h"
#include "common/status_macros.h"
#include "common/unique_fd.h"
#include "common/worker_pool.h"
#include "registry/blob_reader.h"
#include "registry/client.h"
#include "registry/manifest.h"
#include "registry/reference.h"

namespace accel::ctl {
namespace {

using registry::Client;
using registry::Descriptor;
using registry::Reference;

constexpr char kCopyUsage[] =
    R"(Usage: accelctl copy [--platform OS/ARCH[/VARIANT]] [--jobs N] [registry flags] SRC DST

Copies image SRC to DST (both references, e.g. 127.0.0.1:5000/app:1 and
registry.example.com/team/app:1). An index is copied with every platform,
unless --platform picks one (DST then names that platform's manifest).
Manifests are copied byte for byte, so digests stay the same. Blobs that
DST already has are skipped; within one registry they are mounted from the
source repository; the rest are downloaded (verified) and uploaded.
Shows progress on stdout: a live line on a terminal, one line per blob
otherwise. Errors go to stderr as one line.

  --platform P   copy only this platform of an index
  --jobs N       blobs transferred at once (default 4)

)";

absl::Status CopyBlobs(Client& client, const Reference& src, const Reference& dst,
                       const std::vector<Descriptor>& blobs, int jobs, Progress& progress) {
  progress.SetTotal(static_cast<int>(blobs.size()));
  return ParallelFor(blobs.size(), jobs,
                     [&](size_t i) { return CopyBlob(client, src, dst, blobs[i], progress); });
}

absl::Status Copy(Client& client, const Reference& src, const Reference& dst,
                  const std::optional<registry::Platform>& platform, int jobs, Progress& progress,
                  std::string& pushed_digest) {
  ACCEL_ASSIGN_OR_RETURN(Client::FetchedManifest top, client.FetchManifest(src));
  // Manifests to push by digest before the top one, and all their blobs.
  std::vector<Client::FetchedManifest> children;
  Client::FetchedManifest root = top;
  if (registry::IsIndexMediaType(top.descriptor.media_type)) {
    ACCEL_ASSIGN_OR_RETURN(registry::Index idx,
                           registry::ParseIndex(top.bytes, top.descriptor.media_type));
    if (platform) {
      absl::StatusOr<Descriptor> d = registry::SelectPlatform(idx, *platform);
      if (!d.ok()) return Annotate(d.status(), src.String());
      ACCEL_ASSIGN_OR_RETURN(root, client.FetchManifest(src.WithDigest(d->digest)));
    } else {
      for (const Descriptor& d : idx.manifests) {
        if (!registry::IsManifestMediaType(d.media_type)) {
          return absl::UnimplementedError(absl::StrCat(src.String(), ": index entry ", d.digest,
                                                       " has unsupported type ", d.media_type));
        }
        ACCEL_ASSIGN_OR_RETURN(Client::FetchedManifest m,
                               client.FetchManifest(src.WithDigest(d.digest)));
        children.push_back(std::move(m));
      }
    }
  }
  std::vector<Client::FetchedManifest> manifests = children;
  if (!registry::IsIndexMediaType(root.descriptor.media_type)) manifests.push_back(root);
  std::vector<Descriptor> blobs;
  std::set<std::string> seen;
  for (const Client::FetchedManifest& m : manifests) {
    absl::StatusOr<registry::Manifest> parsed =
        registry::ParseManifest(m.bytes, m.descriptor.media_type);
    if (!parsed.ok()) return Annotate(parsed.status(), src.String(), " ", m.descriptor.digest);
    std::vector<Descriptor> all = {parsed->config};
    all.insert(all.end(), parsed->layers.begin(), parsed->layers.end());
    for (const Descriptor& d : all) {
      if (seen.insert(d.digest).second) blobs.push_back(d);
    }
  }
  progress.Line(absl::StrCat("copying ", src.String(), " -> ", dst.String(), ": ", manifests.size(),
                             " manifest(s), ", blobs.size(), " blob(s)"));
  ACCEL_RETURN_IF_ERROR(CopyBlobs(client, src, dst, blobs, jobs, progress));
  for (const Client::FetchedManifest& m : children) {
    ACCEL_RETURN_IF_ERROR(
        client.PushManifest(dst.WithDigest(m.descriptor.digest), m.descriptor.media_type, m.bytes));
  }
  ACCEL_RETURN_IF_ERROR(client.PushManifest(dst, root.descriptor.media_type, root.bytes));
  pushed_digest = root.descriptor.digest;
  return absl::OkStatus();
}

}  // namespace

int RunCopy(const Args& args) {
  RegistryFlags rf;
  std::string platform_text;
  std::string jobs_text = "4";
  std::vector<std::string> refs;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    std::string error;
    if (a == "-h" || a == "--help") {
      std::printf("%s%s", kCopyUsage, kRegistryFlagsUsage);
      return 0;
    } else if (ConsumeValueFlag(args, i, "--platform", platform_text, error) ||
               ConsumeValueFlag(args, i, "--jobs", jobs_text, error) ||
               ConsumeRegistryFlag(args, i, rf, error)) {
      if (!error.empty()) return Fail(absl::StrCat("copy: ", error), 2);
    } else if (!a.empty() && a[0] == '-') {
      return Fail(absl::StrCat("copy: unknown flag \"", a, "\" (see --help)"), 2);
    } else {
      refs.push_back(a);
    }
  }
  if (refs.size() != 2)
    return Fail("copy: want exactly two references, SRC and DST (see --help)", 2);
  int jobs = std::atoi(jobs_text.c_str());
  if (jobs < 1 || jobs > 64) return Fail("copy: --jobs must be between 1 and 64", 2);
  absl::StatusOr<Reference> src = registry::ParseReference(refs[0]);
  if (!src.ok()) return Fail(absl::StrCat("copy: source: ", src.status().message()), 2);
  absl::StatusOr<Reference> dst = registry::ParseReference(refs[1]);
  if (!dst.ok()) return Fail(absl::StrCat("copy: destination: ", dst.status().message()), 2);
  std::optional<registry::Platform> platform;
  if (!platform_text.empty()) {
    absl::StatusOr<registry::Platform> p = registry::ParsePlatform(platform_text);
    if (!p.ok()) return Fail(absl::StrCat("copy: ", p.status().message()), 2);
    platform = *p;
  }
  absl::StatusOr<std::unique_ptr<Client>> client = MakeRegistryClient(rf);
  if (!client.ok()) return Fail(absl::StrCat("copy: ", client.status().message()));
  Progress progress(::isatty(STDOUT_FILENO) == 1);
  std::string digest;
  absl::Status s = Copy(**client, *src, *dst, platform, jobs, progress, digest);
  progress.Finish();
  if (!s.ok()) return Fail(absl::StrCat("copy: ", s.message()));
  std::printf("copied %s to %s (%s)\n", src->String().c_str(), dst->String().c_str(),
              digest.c_str());
  return 0;
}

}  // namespace accel::ctl

// accelctl convert: preloads an image's layers into the shared store and
// pushes the target image (same layer blobs, plus layer annotations that
// name the store layer and the store).

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <deque>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "accelctl/commands.h"
#include "accelctl/registry_flags.h"
#include "accelctl/store_flags.h"
#include "accelctl/transfer.h"
#include "common/labels.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "registry/client.h"
#include "registry/manifest.h"
#include "registry/reference.h"
#include "store/store.h"

namespace accel::ctl {
namespace {

using registry::Client;
using registry::Descriptor;
using registry::Reference;

constexpr char kConvertUsage[] = R"(Usage: accelctl convert [flags] SOURCE [TARGET]

Preloads image SOURCE into the shared store and pushes TARGET, the image
that nodes running accel start without downloading its layers. TARGET
defaults to SOURCE's tag plus "-acc" (app:1 -> app:1-acc).

Each layer is streamed from the registry through decompression (gzip, zstd
or none) and a tar reader straight into the store: nothing is staged on
local disk. Layers are checked against the image's diff ids, published
atomically, and skipped when the store already has them, so a conversion
can be rerun after a failure. TARGET has SOURCE's layer blobs (mounted or
copied within the registry, never re-compressed), so a node without accel
pulls and runs it like SOURCE. Shows progress on stdout.

  --store DIR    the shared store (default: `store` in the daemon config,
                 --config or /etc/accel/config.toml); created if missing
  --platform P   the platform to convert from an index (default: this
                 machine's, e.g. linux/amd64)
  --jobs N       layers converted at once (default 3)

)";

// Live progress: layers done and bytes unpacked.
class ConvertProgress {
 public:
  ConvertProgress(bool tty, int layers) : tty_(tty), layers_(layers), start_(absl::Now()) {}
  void Unpacked(int64_t delta) {
    absl::MutexLock lock(&mu_);
    bytes_ += delta;
    Draw(false);
  }
  void LayerDone(const std::string& diff_id, const std::string& how) {
    absl::MutexLock lock(&mu_);
    ++done_;
    if (tty_) std::fprintf(stdout, "\r\033[K");
    std::fprintf(stdout, "layer %s %s\n", diff_id.c_str(), how.c_str());
    Draw(true);
  }
  void Line(const std::string& text) {
    absl::MutexLock lock(&mu_);
    if (tty_) std::fprintf(stdout, "\r\033[K");
    std::fprintf(stdout, "%s\n", text.c_str());
    std::fflush(stdout);
  }
  int64_t bytes() {
    absl::MutexLock lock(&mu_);
    return bytes_;
  }

 private:
  void Draw(bool force) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!tty_) return;
    absl::Time now = absl::Now();
    if (!force && now - last_draw_ < absl::Milliseconds(100)) return;
    last_draw_ = now;
    double secs = std::max(1e-3, absl::ToDoubleSeconds(now - start_));
    std::fprintf(stdout, "\r\033[Klayers %d/%d, %.1f MiB unpacked, %.1f MB/s", done_, layers_,
                 static_cast<double>(bytes_) / (1 << 20), static_cast<double>(bytes_) / 1e6 / secs);
    std::fflush(stdout);
  }
  const bool tty_;
  const int layers_;
  const absl::Time start_;
  absl::Mutex mu_;
  int done_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_draw_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

// The diff ids from the image config, one per layer.
absl::StatusOr<std::vector<std::string>> DiffIds(Client& client, const Reference& src,
                                                 const registry::Manifest& manifest) {
  ACCEL_ASSIGN_OR_RETURN(std::string config, client.FetchBlobBytes(src, manifest.config));
  ACCEL_ASSIGN_OR_RETURN(std::vector<std::string> out, registry::ConfigDiffIds(config, manifest));
  // The store names layers by diff id: it takes sha256 only.
  for (const std::string& d : out) {
    ACCEL_RETURN_IF_ERROR(
        Annotate(store::ValidateDiffId(d), "image config ", manifest.config.digest));
  }
  return out;
}

// Streams layer `desc` from the registry into the store.
absl::StatusOr<store::WriteResult> ConvertLayer(Client& client, const store::Store& store,
                                                const Reference& src, const Descriptor& desc,
                                                const std::string& diff_id,
                                                ConvertProgress& progress) {
  if (store.HasLayer(diff_id)) {
    store::WriteResult r;
    r.existed = true;
    return r;
  }
  BlobPipe pipe(16 << 20);
  std::thread download = StartDownload(client, src, desc, pipe);
  uint64_t last = 0;
  absl::StatusOr<store::WriteResult> result = store.WriteLayer(
      diff_id, [&](char* buf, size_t len) { return pipe.Read(buf, len); },
      [&](uint64_t total) {
        progress.Unpacked(static_cast<int64_t>(total - last));
        last = total;
      });
  pipe.ReaderGone();
  // Drain so a producer blocked on a full pipe sees ReaderGone.
  download.join();
  return result;
}

struct Converted {
  std::string digest;
  int new_layers = 0;
  uint64_t layer_bytes = 0;
};

absl::Status Convert(Client& client, const store::Store& store, const Reference& src,
                     const Reference& dst, const registry::Platform& platform, int jobs, bool tty,
                     Converted& out) {
  ACCEL_ASSIGN_OR_RETURN(Client::ResolvedImage image, client.ResolveImage(src, platform));
  const registry::Manifest& manifest = image.parsed;
  for (const Descriptor& l : manifest.layers) {
    if (!registry::IsTarLayerMediaType(l.media_type)) {
      return absl::UnimplementedError(absl::StrCat("layer ", l.digest, " has media type ",
                                                   l.media_type,
                                                   ", which is not a tar layer accel can preload"));
    }
  }
  ACCEL_ASSIGN_OR_RETURN(std::vector<std::string> diff_ids, DiffIds(client, src, manifest));
  ConvertProgress progress(tty, static_cast<int>(manifest.layers.size()));
  progress.Line(absl::StrCat("converting ", src.String(), " (", platform.String(), ", ",
                             manifest.layers.size(), " layers) into store ", store.dir()));

  // Layers, in parallel; a diff id that appears twice is converted once.
  std::vector<size_t> todo;
  std::set<std::string> seen;
  for (size_t i = 0; i < diff_ids.size(); ++i) {
    if (seen.insert(diff_ids[i]).second) todo.push_back(i);
  }
  std::atomic<size_t> next{0};
  absl::Mutex mu;
  absl::Status first_error;
  auto worker = [&] {
    for (;;) {
      size_t k = next.fetch_add(1);
      if (k >= todo.size()) return;
      {
        absl::MutexLock lock(&mu);
        if (!first_error.ok()) return;
      }
      size_t i = todo[k];
      absl::Time start = absl::Now();
      absl::StatusOr<store::WriteResult> r =
          ConvertLayer(client, store, src, manifest.layers[i], diff_ids[i], progress);
      if (!r.ok()) {
        absl::MutexLock lock(&mu);
        if (first_error.ok()) {
          first_error = Annotate(r.status(), "layer ", i + 1, " (", manifest.layers[i].digest, ")");
        }
        return;
      }
      if (r->existed) {
        progress.LayerDone(diff_ids[i], "already in the store");
      } else {
        double secs = std::max(1e-3, absl::ToDoubleSeconds(absl::Now() - start));
        progress.LayerDone(
            diff_ids[i],
            absl::StrFormat("stored: %d entries, %.1f MiB in %.1fs (%.1f MB/s)", r->info.entries,
                            r->info.data_bytes / 1048576.0, secs, r->info.data_bytes / 1e6 / secs));
        absl::MutexLock lock(&mu);
        out.new_layers++;
        out.layer_bytes += r->info.data_bytes;
      }
    }
  };
  {
    std::vector<std::thread> threads;
    int n = std::max(1, std::min<int>(jobs, static_cast<int>(todo.size())));
    for (int t = 0; t < n; ++t) threads.emplace_back(worker);
    for (std::thread& t : threads) t.join();
  }
  ACCEL_RETURN_IF_ERROR(first_error);

  // The target manifest: the source's, byte-compatible apart from the
  // layer annotations (unknown fields are kept).
  nlohmann::json doc = nlohmann::json::parse(image.manifest.bytes, nullptr, false);
  if (doc.is_discarded() || !doc.contains("layers") || !doc["layers"].is_array() ||
      doc["layers"].size() != diff_ids.size()) {
    return absl::InvalidArgumentError("source manifest does not have the expected layers array");
  }
  for (size_t i = 0; i < diff_ids.size(); ++i) {
    nlohmann::json& layer = doc["layers"][i];
    if (!layer.is_object())
      return absl::InvalidArgumentError("source manifest layer is not an object");
    if (!layer.contains("annotations") || !layer["annotations"].is_object()) {
      layer["annotations"] = nlohmann::json::object();
    }
    layer["annotations"][kStoreLayerLabel] = diff_ids[i];
    layer["annotations"][kStoreIdLabel] = store.id();
  }
  const std::string target_bytes = doc.dump();

  // Blobs: the same ones, present in the target repository.
  Progress blob_progress(false);
  if (dst.domain != src.domain || dst.repository != src.repository) {
    std::vector<Descriptor> blobs = {manifest.config};
    blobs.insert(blobs.end(), manifest.layers.begin(), manifest.layers.end());
    std::set<std::string> done;
    for (const Descriptor& d : blobs) {
      if (!done.insert(d.digest).second) continue;
      ACCEL_RETURN_IF_ERROR(CopyBlob(client, src, dst, d, blob_progress));
    }
  }
  // The record goes first: from then on gc and `store rm` of another image
  // keep these layers. Then every layer must still be there before the
  // target is published (a concurrent removal would leave it pointing at
  // missing layers).
  out.digest = Sha256::Of(target_bytes);
  store::ImageRecord record;
  record.target = dst.String();
  record.source = src.String();
  record.manifest_digest = out.digest;
  record.platform = platform.String();
  record.diff_ids = diff_ids;
  for (const Descriptor& d : manifest.layers) record.blobs.push_back(d.digest);
  record.created_unix = static_cast<int64_t>(std::time(nullptr));
  ACCEL_RETURN_IF_ERROR(store.PutImage(record));
  for (const std::string& d : diff_ids) {
    if (!store.HasLayer(d)) {
      return absl::AbortedError(absl::StrCat(
          "layer ", d, " was removed from the store during the conversion; run it again"));
    }
  }
  return client.PushManifest(dst, image.manifest.descriptor.media_type, target_bytes);
}

}  // namespace

int RunConvert(const Args& args) {
  RegistryFlags rf;
  std::string store_flag, platform_text, jobs_text = "3";
  std::vector<std::string> refs;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    std::string error;
    if (a == "-h" || a == "--help") {
      std::printf("%s%s", kConvertUsage, kRegistryFlagsUsage);
      return 0;
    } else if (ConsumeValueFlag(args, i, "--store", store_flag, error) ||
               ConsumeValueFlag(args, i, "--platform", platform_text, error) ||
               ConsumeValueFlag(args, i, "--jobs", jobs_text, error) ||
               ConsumeRegistryFlag(args, i, rf, error)) {
      if (!error.empty()) return Fail(absl::StrCat("convert: ", error), 2);
    } else if (!a.empty() && a[0] == '-') {
      return Fail(absl::StrCat("convert: unknown flag \"", a, "\" (see --help)"), 2);
    } else {
      refs.push_back(a);
    }
  }
  if (refs.empty() || refs.size() > 2) {
    return Fail("convert: want SOURCE [TARGET] (see --help)", 2);
  }
  int jobs = std::atoi(jobs_text.c_str());
  if (jobs < 1 || jobs > 32) return Fail("convert: --jobs must be between 1 and 32", 2);
  absl::StatusOr<Reference> src = registry::ParseReference(refs[0]);
  if (!src.ok()) return Fail(absl::StrCat("convert: source: ", src.status().message()), 2);
  Reference dst;
  if (refs.size() == 2) {
    absl::StatusOr<Reference> parsed = registry::ParseReference(refs[1]);
    if (!parsed.ok()) return Fail(absl::StrCat("convert: target: ", parsed.status().message()), 2);
    dst = *parsed;
  } else {
    if (src->tag.empty()) {
      return Fail("convert: SOURCE has no tag to derive TARGET from; name TARGET", 2);
    }
    dst = *src;
    dst.digest.clear();
    dst.tag = src->tag + "-acc";
  }
  if (!dst.digest.empty()) return Fail("convert: TARGET must be a tag, not a digest", 2);
  registry::Platform platform = registry::DefaultPlatform();
  if (!platform_text.empty()) {
    absl::StatusOr<registry::Platform> p = registry::ParsePlatform(platform_text);
    if (!p.ok()) return Fail(absl::StrCat("convert: ", p.status().message()), 2);
    platform = *p;
  }
  absl::StatusOr<std::string> store_dir = ResolveStoreDir(store_flag, rf.config);
  if (!store_dir.ok()) return Fail(absl::StrCat("convert: ", store_dir.status().message()), 2);
  absl::StatusOr<std::unique_ptr<store::Store>> store = store::Store::Open(*store_dir, true);
  if (!store.ok()) return Fail(absl::StrCat("convert: ", store.status().message()));
  absl::StatusOr<std::unique_ptr<Client>> client = MakeRegistryClient(rf);
  if (!client.ok()) return Fail(absl::StrCat("convert: ", client.status().message()));

  absl::Time start = absl::Now();
  Converted out;
  absl::Status s =
      Convert(**client, **store, *src, dst, platform, jobs, ::isatty(STDOUT_FILENO) == 1, out);
  if (!s.ok()) return Fail(absl::StrCat("convert: ", s.message()));
  double secs = std::max(1e-3, absl::ToDoubleSeconds(absl::Now() - start));
  std::printf("converted %s to %s (%s): %d new layer(s), %.1f MiB stored in %.1fs (%.1f MB/s)\n",
              src->String().c_str(), dst.String().c_str(), out.digest.c_str(), out.new_layers,
              out.layer_bytes / 1048576.0, secs, out.layer_bytes / 1e6 / secs);
  return 0;
}

}  // namespace accel::ctl

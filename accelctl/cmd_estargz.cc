// accelctl estargz: converts an image's layers to eStargz and pushes the
// result, so nodes can start it lazily.

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "accelctl/commands.h"
#include "accelctl/registry_flags.h"
#include "accelctl/transfer.h"
#include "common/decompress.h"
#include "common/labels.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "common/unique_fd.h"
#include "estargz/builder.h"
#include "estargz/toc.h"
#include "registry/blob_reader.h"
#include "registry/client.h"
#include "registry/manifest.h"
#include "registry/reference.h"

namespace accel::ctl {
namespace {

using registry::Client;
using registry::Descriptor;
using registry::Reference;

constexpr char kEstargzUsage[] = R"(Usage: accelctl estargz [flags] SOURCE TARGET

Converts every layer of image SOURCE to eStargz and pushes TARGET: an OCI
image whose layers other eStargz readers (and accel) can mount lazily, and
which any containerd still pulls and unpacks like a gzip image. Each layer's
chunks carry digests; layers get the annotations
containerd.io/snapshot/stargz/toc.digest and
io.containers.estargz.uncompressed-size. The source layers are checked
against the image's diff ids while they stream through. Converted blobs are
staged in $TMPDIR (one per layer being converted) and removed afterwards.

  --prioritize FILE  paths (one per line, e.g. /usr/bin/python3) to place
                     before the prefetch landmark in every layer that has
                     them; they are fetched first after a lazy mount
  --platform P       the platform to convert from an index (default: this machine's)
  --jobs N           layers converted at once (default 2)
  --chunk-size N     uncompressed bytes per chunk (default 4194304)

)";

struct ConvertedLayer {
  std::string path;  // the staged blob
  estargz::BuildResult result;
};

absl::StatusOr<ConvertedLayer> ConvertLayer(Client& client, const Reference& src,
                                            const Descriptor& desc, const std::string& want_diff_id,
                                            const estargz::BuildOptions& options) {
  const char* tmpdir = std::getenv("TMPDIR");
  ConvertedLayer out;
  out.path = absl::StrCat(tmpdir && *tmpdir ? tmpdir : "/tmp", "/accelctl-estargz-XXXXXX");
  UniqueFd fd(::mkstemp(out.path.data()));
  if (!fd.valid()) return absl::InternalError(absl::StrCat("create temporary file ", out.path));
  bool keep = false;
  auto remove = absl::MakeCleanup([&] {
    if (!keep) ::unlink(out.path.c_str());
  });

  BlobPipe pipe(16 << 20);
  std::thread download = StartDownload(client, src, desc, pipe);
  ReadFn compressed = [&](char* buf, size_t len) { return pipe.Read(buf, len); };
  Decompressor decompressor(compressed);
  Sha256 source_hash;
  estargz::TarInputFn tar = [&](char* buf, size_t len) -> absl::StatusOr<size_t> {
    ACCEL_ASSIGN_OR_RETURN(size_t n, decompressor.Read(buf, len));
    source_hash.Update(buf, n);
    return n;
  };
  estargz::BlobSinkFn sink = [&](absl::string_view bytes) -> absl::Status {
    size_t off = 0;
    while (off < bytes.size()) {
      ssize_t w = ::write(fd.get(), bytes.data() + off, bytes.size() - off);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return absl::ResourceExhaustedError(absl::StrCat("write ", out.path));
      off += static_cast<size_t>(w);
    }
    return absl::OkStatus();
  };
  absl::StatusOr<estargz::BuildResult> built = estargz::Build(tar, sink, options);
  // The builder may stop before the end (the tar end marker): the rest of
  // the stream still counts for the source's diff id.
  absl::Status drained = absl::OkStatus();
  if (built.ok()) {
    std::vector<char> buf(1 << 20);
    for (;;) {
      absl::StatusOr<size_t> n = tar(buf.data(), buf.size());
      if (!n.ok()) {
        drained = n.status();
        break;
      }
      if (*n == 0) break;
    }
  }
  pipe.ReaderGone();
  download.join();
  if (!built.ok()) return built.status();
  ACCEL_RETURN_IF_ERROR(drained);
  if (source_hash.Digest() != want_diff_id) {
    return absl::DataLossError(absl::StrCat("layer ", desc.digest, " decompresses to ",
                                            source_hash.Digest(), ", the image config says ",
                                            want_diff_id));
  }
  out.result = *std::move(built);
  keep = true;
  return out;
}

absl::Status ConvertImage(Client& client, const Reference& src, const Reference& dst,
                          const registry::Platform& platform, int jobs,
                          const estargz::BuildOptions& options, std::string& digest_out) {
  ACCEL_ASSIGN_OR_RETURN(Client::ResolvedImage image, client.ResolveImage(src, platform));
  const registry::Manifest& manifest = image.parsed;
  ACCEL_ASSIGN_OR_RETURN(std::string config_bytes, client.FetchBlobBytes(src, manifest.config));
  nlohmann::json config = nlohmann::json::parse(config_bytes, nullptr, false);
  if (config.is_discarded() || !config.is_object() || !config.contains("rootfs") ||
      !config["rootfs"].is_object() || !config["rootfs"].contains("diff_ids") ||
      !config["rootfs"]["diff_ids"].is_array() ||
      config["rootfs"]["diff_ids"].size() != manifest.layers.size()) {
    return absl::InvalidArgumentError("image config has no rootfs.diff_ids matching its layers");
  }
  std::vector<std::string> diff_ids;
  for (const auto& d : config["rootfs"]["diff_ids"]) {
    if (!d.is_string()) return absl::InvalidArgumentError("rootfs.diff_ids holds a non-string");
    diff_ids.push_back(d.get<std::string>());
  }
  if (manifest.layers.empty()) return absl::InvalidArgumentError("image has no layers to convert");
  std::printf("converting %s (%zu layers) to eStargz\n", src.String().c_str(),
              manifest.layers.size());
  std::fflush(stdout);

  std::vector<absl::StatusOr<ConvertedLayer>> results(manifest.layers.size(),
                                                      absl::UnknownError("not converted"));
  auto cleanup = absl::MakeCleanup([&] {
    for (auto& r : results) {
      if (r.ok()) ::unlink(r->path.c_str());
    }
  });
  std::atomic<size_t> next{0};
  absl::Mutex mu;
  auto worker = [&] {
    for (size_t i; (i = next.fetch_add(1)) < manifest.layers.size();) {
      absl::Time start = absl::Now();
      absl::StatusOr<ConvertedLayer> r =
          ConvertLayer(client, src, manifest.layers[i], diff_ids[i], options);
      absl::MutexLock lock(&mu);
      if (r.ok()) {
        std::printf("layer %zu/%zu %s -> %s (%.1f MiB, TOC %s) in %.1fs\n", i + 1,
                    manifest.layers.size(), manifest.layers[i].digest.c_str(),
                    r->result.blob_digest.c_str(), r->result.blob_size / 1048576.0,
                    r->result.toc_digest.c_str(), absl::ToDoubleSeconds(absl::Now() - start));
        std::fflush(stdout);
      }
      results[i] = std::move(r);
      if (!results[i].ok()) return;
    }
  };
  {
    std::vector<std::thread> threads;
    int n = std::max(1, std::min<int>(jobs, static_cast<int>(manifest.layers.size())));
    for (int t = 0; t < n; ++t) threads.emplace_back(worker);
    for (std::thread& t : threads) t.join();
  }
  for (size_t i = 0; i < results.size(); ++i) {
    if (!results[i].ok()) {
      return Annotate(results[i].status(), "layer ", i + 1, " (", manifest.layers[i].digest, ")");
    }
  }

  // Blobs, then the config with the new diff ids, then the manifest.
  nlohmann::json layers = nlohmann::json::array();
  for (size_t i = 0; i < results.size(); ++i) {
    const estargz::BuildResult& b = results[i]->result;
    Descriptor d;
    d.media_type = registry::media::kOciLayerGzip;
    d.digest = b.blob_digest;
    d.size = static_cast<int64_t>(b.blob_size);
    ACCEL_ASSIGN_OR_RETURN(std::optional<int64_t> have, client.StatBlob(dst, d.digest));
    if (!have) {
      ACCEL_ASSIGN_OR_RETURN(std::unique_ptr<registry::BlobReader> reader,
                             registry::OpenFileBlobReader(results[i]->path));
      ACCEL_RETURN_IF_ERROR(client.PushBlob(dst, d, *reader));
    }
    config["rootfs"]["diff_ids"][i] = b.diff_id;
    layers.push_back({{"mediaType", d.media_type},
                      {"digest", d.digest},
                      {"size", d.size},
                      {"annotations",
                       {{kTocDigestAnnotation, b.toc_digest},
                        {kUncompressedSizeAnnotation, absl::StrCat(b.uncompressed_size)}}}});
  }
  const std::string new_config = config.dump();
  Descriptor config_desc;
  config_desc.media_type = registry::media::kOciConfig;
  config_desc.digest = Sha256::Of(new_config);
  config_desc.size = static_cast<int64_t>(new_config.size());
  ACCEL_ASSIGN_OR_RETURN(std::optional<int64_t> have_config,
                         client.StatBlob(dst, config_desc.digest));
  if (!have_config) {
    const char* tmpdir = std::getenv("TMPDIR");
    std::string path = absl::StrCat(tmpdir && *tmpdir ? tmpdir : "/tmp", "/accelctl-config-XXXXXX");
    UniqueFd cfd(::mkstemp(path.data()));
    if (!cfd.valid()) return absl::InternalError(absl::StrCat("create temporary file ", path));
    auto rm = absl::MakeCleanup([&] { ::unlink(path.c_str()); });
    if (::write(cfd.get(), new_config.data(), new_config.size()) !=
        static_cast<ssize_t>(new_config.size())) {
      return absl::ResourceExhaustedError(absl::StrCat("write ", path));
    }
    ACCEL_ASSIGN_OR_RETURN(std::unique_ptr<registry::BlobReader> reader,
                           registry::OpenFileBlobReader(path));
    ACCEL_RETURN_IF_ERROR(client.PushBlob(dst, config_desc, *reader));
  }
  nlohmann::json doc = {{"schemaVersion", 2},
                        {"mediaType", registry::media::kOciManifest},
                        {"config",
                         {{"mediaType", config_desc.media_type},
                          {"digest", config_desc.digest},
                          {"size", config_desc.size}}},
                        {"layers", layers}};
  const std::string bytes = doc.dump();
  ACCEL_RETURN_IF_ERROR(client.PushManifest(dst, registry::media::kOciManifest, bytes));
  digest_out = Sha256::Of(bytes);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ReadPrioritized(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return absl::NotFoundError(absl::StrCat("--prioritize ", path, ": cannot read the file"));
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    std::string p(absl::StripAsciiWhitespace(line));
    if (!p.empty() && p[0] != '#') out.push_back(p);
  }
  return out;
}

}  // namespace

int RunEstargz(const Args& args) {
  RegistryFlags rf;
  std::string prioritize, platform_text, jobs_text = "2", chunk_text;
  std::vector<std::string> refs;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    std::string error;
    if (a == "-h" || a == "--help") {
      std::printf("%s%s", kEstargzUsage, kRegistryFlagsUsage);
      return 0;
    } else if (ConsumeValueFlag(args, i, "--prioritize", prioritize, error) ||
               ConsumeValueFlag(args, i, "--platform", platform_text, error) ||
               ConsumeValueFlag(args, i, "--jobs", jobs_text, error) ||
               ConsumeValueFlag(args, i, "--chunk-size", chunk_text, error) ||
               ConsumeRegistryFlag(args, i, rf, error)) {
      if (!error.empty()) return Fail(absl::StrCat("estargz: ", error), 2);
    } else if (!a.empty() && a[0] == '-') {
      return Fail(absl::StrCat("estargz: unknown flag \"", a, "\" (see --help)"), 2);
    } else {
      refs.push_back(a);
    }
  }
  if (refs.size() != 2) return Fail("estargz: want SOURCE and TARGET (see --help)", 2);
  int jobs = std::atoi(jobs_text.c_str());
  if (jobs < 1 || jobs > 16) return Fail("estargz: --jobs must be between 1 and 16", 2);
  estargz::BuildOptions options;
  options.allow_missing_prioritized = true;
  if (!chunk_text.empty()) {
    long long n = std::atoll(chunk_text.c_str());
    if (n < 4096 || n > (1ll << 30))
      return Fail("estargz: --chunk-size must be 4096..1073741824", 2);
    options.chunk_size = static_cast<uint64_t>(n);
  }
  if (!prioritize.empty()) {
    absl::StatusOr<std::vector<std::string>> p = ReadPrioritized(prioritize);
    if (!p.ok()) return Fail(absl::StrCat("estargz: ", p.status().message()), 2);
    options.prioritized_paths = *p;
  }
  absl::StatusOr<Reference> src = registry::ParseReference(refs[0]);
  if (!src.ok()) return Fail(absl::StrCat("estargz: source: ", src.status().message()), 2);
  absl::StatusOr<Reference> dst = registry::ParseReference(refs[1]);
  if (!dst.ok()) return Fail(absl::StrCat("estargz: target: ", dst.status().message()), 2);
  registry::Platform platform = registry::DefaultPlatform();
  if (!platform_text.empty()) {
    absl::StatusOr<registry::Platform> p = registry::ParsePlatform(platform_text);
    if (!p.ok()) return Fail(absl::StrCat("estargz: ", p.status().message()), 2);
    platform = *p;
  }
  absl::StatusOr<std::unique_ptr<Client>> client = MakeRegistryClient(rf);
  if (!client.ok()) return Fail(absl::StrCat("estargz: ", client.status().message()));
  absl::Time start = absl::Now();
  std::string digest;
  absl::Status s = ConvertImage(**client, *src, *dst, platform, jobs, options, digest);
  if (!s.ok()) return Fail(absl::StrCat("estargz: ", s.message()));
  std::printf("converted %s to eStargz %s (%s) in %.1fs\n", src->String().c_str(),
              dst->String().c_str(), digest.c_str(), absl::ToDoubleSeconds(absl::Now() - start));
  return 0;
}

}  // namespace accel::ctl

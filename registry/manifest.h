#pragma once

// OCI and Docker v2 manifests and image indexes: parsing with
// shape validation (registries are untrusted), platform selection.
//
// Docker schema 1 manifests are not supported (rejected with a clear error).

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/labels.h"

namespace accel::registry {

// The media type names are in common/labels.h (registry::media::kX
// is accel::media::kX).
namespace media = ::accel::media;

// Manifests larger than this are refused (containerd uses the same bound).
inline constexpr int64_t kMaxManifestSize = 4 << 20;

bool IsIndexMediaType(absl::string_view media_type);
bool IsManifestMediaType(absl::string_view media_type);
// True for a layer that is a tar stream (plain, gzip or zstd; OCI or Docker,
// distributable or not).
bool IsTarLayerMediaType(absl::string_view media_type);

struct Platform {
  std::string os;
  std::string architecture;
  std::string variant;
  std::string os_version;

  // "os/arch[/variant]".
  std::string String() const;
};

// Parses "os/arch[/variant]" (e.g. "linux/arm64/v8"), normalising
// architecture aliases (x86_64 -> amd64, aarch64 -> arm64).
absl::StatusOr<Platform> ParsePlatform(absl::string_view text);

// The platform this binary runs on (linux/<arch>[/variant]).
Platform DefaultPlatform();

// True if an index entry for `have` can run where `want` is asked for:
// same os and architecture, and the same variant when `want` names one
// (arm64's missing variant means v8).
bool PlatformMatches(const Platform& want, const Platform& have);

struct Descriptor {
  std::string media_type;
  std::string digest;
  int64_t size = 0;
  std::map<std::string, std::string> annotations;
  std::vector<std::string> urls;
  std::optional<Platform> platform;
};

struct Manifest {
  std::string media_type;  // from the document, or the response's Content-Type
  Descriptor config;
  std::vector<Descriptor> layers;
  std::map<std::string, std::string> annotations;
};

struct Index {
  std::string media_type;
  std::vector<Descriptor> manifests;
  std::map<std::string, std::string> annotations;
};

// Works out what `bytes` hold: the document's "mediaType" if present, else
// `content_type` (a Content-Type header, parameters ignored), else by shape
// ("manifests" -> OCI index, "layers" -> OCI manifest). Errors for non-JSON,
// schema 1, and unknown kinds.
absl::StatusOr<std::string> DetectManifestMediaType(absl::string_view bytes,
                                                    absl::string_view content_type);

// Parse and validate (every descriptor has a media type, a valid digest and a
// non-negative size). `media_type` is what DetectManifestMediaType found.
absl::StatusOr<Manifest> ParseManifest(absl::string_view bytes, absl::string_view media_type);

// The image config's rootfs.diff_ids (bottom layer first), each a valid
// digest, exactly one per layer of `manifest`; `config` is the config blob.
absl::StatusOr<std::vector<std::string>> ConfigDiffIds(absl::string_view config,
                                                       const Manifest& manifest);
absl::StatusOr<Index> ParseIndex(absl::string_view bytes, absl::string_view media_type);

// The first entry of `index` that matches `want`; NotFound listing the
// platforms the index has otherwise.
absl::StatusOr<Descriptor> SelectPlatform(const Index& index, const Platform& want);

// {"mediaType", "digest", "size", "annotations"?, "platform"?} as in OCI.
nlohmann::json DescriptorToJson(const Descriptor& d);

}  // namespace accel::registry

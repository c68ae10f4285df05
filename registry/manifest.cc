#include "registry/manifest.h"

#include <sys/utsname.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/digest.h"

namespace accel::registry {
namespace {

using nlohmann::json;

std::string NormalizeArch(absl::string_view arch) {
  std::string a = absl::AsciiStrToLower(arch);
  if (a == "x86_64" || a == "x86-64") return "amd64";
  if (a == "aarch64") return "arm64";
  if (a == "i386" || a == "i686") return "386";
  return a;
}

absl::Status Shape(absl::string_view what, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("malformed ", what, ": ", why));
}

absl::Status ParseAnnotations(const json& obj, absl::string_view what,
                              std::map<std::string, std::string>& out) {
  auto it = obj.find("annotations");
  if (it == obj.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_object()) return Shape(what, "\"annotations\" is not an object");
  for (auto& [k, v] : it->items()) {
    if (!v.is_string()) return Shape(what, absl::StrCat("annotation \"", k, "\" is not a string"));
    out[k] = v.get<std::string>();
  }
  return absl::OkStatus();
}

absl::StatusOr<Descriptor> ParseDescriptor(const json& j, absl::string_view what) {
  if (!j.is_object()) return Shape(what, "descriptor is not an object");
  Descriptor d;
  auto mt = j.find("mediaType");
  if (mt == j.end() || !mt->is_string() || mt->get<std::string>().empty()) {
    return Shape(what, "descriptor without \"mediaType\"");
  }
  d.media_type = mt->get<std::string>();
  auto dg = j.find("digest");
  if (dg == j.end() || !dg->is_string()) return Shape(what, "descriptor without \"digest\"");
  d.digest = dg->get<std::string>();
  absl::Status s = ValidateDigest(d.digest);
  if (!s.ok()) return Shape(what, s.message());
  auto sz = j.find("size");
  if (sz == j.end() || !sz->is_number_integer() || sz->get<int64_t>() < 0) {
    return Shape(what, absl::StrCat("descriptor ", d.digest, " without a valid \"size\""));
  }
  d.size = sz->get<int64_t>();
  s = ParseAnnotations(j, what, d.annotations);
  if (!s.ok()) return s;
  auto urls = j.find("urls");
  if (urls != j.end() && !urls->is_null()) {
    if (!urls->is_array()) return Shape(what, "\"urls\" is not an array");
    for (const json& u : *urls) {
      if (!u.is_string()) return Shape(what, "\"urls\" entry is not a string");
      d.urls.push_back(u.get<std::string>());
    }
  }
  auto pl = j.find("platform");
  if (pl != j.end() && !pl->is_null()) {
    if (!pl->is_object()) return Shape(what, "\"platform\" is not an object");
    Platform p;
    auto str = [&](const char* key, std::string& out) -> bool {
      auto f = pl->find(key);
      if (f == pl->end() || f->is_null()) return true;
      if (!f->is_string()) return false;
      out = f->get<std::string>();
      return true;
    };
    if (!str("os", p.os) || !str("architecture", p.architecture) || !str("variant", p.variant) ||
        !str("os.version", p.os_version)) {
      return Shape(what, "\"platform\" field is not a string");
    }
    p.architecture = NormalizeArch(p.architecture);
    d.platform = p;
  }
  return d;
}

absl::StatusOr<json> ParseJson(absl::string_view bytes, absl::string_view what) {
  if (bytes.size() > static_cast<size_t>(kMaxManifestSize)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is larger than ", kMaxManifestSize, " bytes"));
  }
  json j = json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Shape(what, "not valid JSON");
  if (!j.is_object()) return Shape(what, "not a JSON object");
  return j;
}

}  // namespace

bool IsIndexMediaType(absl::string_view mt) {
  return mt == media::kOciIndex || mt == media::kDockerManifestList;
}

bool IsManifestMediaType(absl::string_view mt) {
  return mt == media::kOciManifest || mt == media::kDockerManifest;
}

bool IsTarLayerMediaType(absl::string_view mt) {
  for (const char* tar : {media::kOciLayer, media::kOciLayerGzip, media::kOciLayerZstd,
                          media::kOciLayerNondistributable, media::kOciLayerNondistributableGzip,
                          media::kOciLayerNondistributableZstd, media::kDockerLayer,
                          media::kDockerLayerGzip, media::kDockerForeignLayerGzip}) {
    if (mt == tar) return true;
  }
  return false;
}

std::string Platform::String() const {
  std::string out = absl::StrCat(os, "/", architecture);
  if (!variant.empty()) absl::StrAppend(&out, "/", variant);
  return out;
}

absl::StatusOr<Platform> ParsePlatform(absl::string_view text) {
  std::vector<std::string> parts = absl::StrSplit(text, '/');
  if (parts.size() < 2 || parts.size() > 3 || parts[0].empty() || parts[1].empty() ||
      (parts.size() == 3 && parts[2].empty())) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid platform \"", text, "\" (want OS/ARCH or OS/ARCH/VARIANT)"));
  }
  Platform p;
  p.os = absl::AsciiStrToLower(parts[0]);
  p.architecture = NormalizeArch(parts[1]);
  if (parts.size() == 3) p.variant = absl::AsciiStrToLower(parts[2]);
  return p;
}

Platform DefaultPlatform() {
  Platform p;
  p.os = "linux";
  struct utsname u;
  std::string machine = ::uname(&u) == 0 ? u.machine : "x86_64";
  if (absl::StartsWith(machine, "armv7")) {
    p.architecture = "arm";
    p.variant = "v7";
  } else if (absl::StartsWith(machine, "armv6")) {
    p.architecture = "arm";
    p.variant = "v6";
  } else {
    p.architecture = NormalizeArch(machine);
  }
  return p;
}

bool PlatformMatches(const Platform& want, const Platform& have) {
  if (want.os != absl::AsciiStrToLower(have.os)) return false;
  if (want.architecture != NormalizeArch(have.architecture)) return false;
  if (want.variant.empty()) return true;
  std::string hv = absl::AsciiStrToLower(have.variant);
  if (hv.empty() && want.architecture == "arm64") hv = "v8";
  return hv == want.variant;
}

absl::StatusOr<std::string> DetectManifestMediaType(absl::string_view bytes,
                                                    absl::string_view content_type) {
  absl::StatusOr<json> j = ParseJson(bytes, "manifest");
  if (!j.ok()) return j.status();
  auto sv = j->find("schemaVersion");
  if (sv != j->end() && sv->is_number_integer() && sv->get<int64_t>() == 1) {
    return absl::UnimplementedError("Docker schema 1 manifests are not supported");
  }
  std::string mt;
  auto f = j->find("mediaType");
  if (f != j->end() && f->is_string()) {
    mt = f->get<std::string>();
  } else {
    mt = std::string(absl::StripAsciiWhitespace(content_type.substr(0, content_type.find(';'))));
    if (!IsIndexMediaType(mt) && !IsManifestMediaType(mt)) {
      if (j->contains("manifests")) {
        mt = media::kOciIndex;
      } else if (j->contains("layers")) {
        mt = media::kOciManifest;
      }
    }
  }
  if (!IsIndexMediaType(mt) && !IsManifestMediaType(mt)) {
    return absl::UnimplementedError(
        absl::StrCat("unsupported manifest media type \"", mt.substr(0, 200), "\""));
  }
  return mt;
}

absl::StatusOr<std::vector<std::string>> ConfigDiffIds(absl::string_view config,
                                                       const Manifest& manifest) {
  const std::string& digest = manifest.config.digest;
  json j = json::parse(config.begin(), config.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("image config ", digest, " is not JSON"));
  }
  auto rootfs = j.find("rootfs");
  if (rootfs == j.end() || !rootfs->is_object() || !rootfs->contains("diff_ids") ||
      !(*rootfs)["diff_ids"].is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat("image config ", digest, " has no rootfs.diff_ids"));
  }
  std::vector<std::string> out;
  for (const json& d : (*rootfs)["diff_ids"]) {
    if (!d.is_string()) return absl::InvalidArgumentError("rootfs.diff_ids holds a non-string");
    std::string s = d.get<std::string>();
    absl::Status valid = ValidateDigest(s);
    if (!valid.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("image config ", digest, ": ", valid.message()));
    }
    out.push_back(std::move(s));
  }
  if (out.size() != manifest.layers.size()) {
    return absl::InvalidArgumentError(absl::StrCat("image has ", manifest.layers.size(),
                                                   " layers but its config lists ", out.size(),
                                                   " diff ids"));
  }
  return out;
}

absl::StatusOr<Manifest> ParseManifest(absl::string_view bytes, absl::string_view media_type) {
  absl::StatusOr<json> j = ParseJson(bytes, "manifest");
  if (!j.ok()) return j.status();
  Manifest m;
  m.media_type = std::string(media_type);
  auto cfg = j->find("config");
  if (cfg == j->end()) return Shape("manifest", "no \"config\"");
  absl::StatusOr<Descriptor> c = ParseDescriptor(*cfg, "manifest config");
  if (!c.ok()) return c.status();
  m.config = *std::move(c);
  auto layers = j->find("layers");
  if (layers == j->end() || !layers->is_array()) return Shape("manifest", "no \"layers\" array");
  for (const json& l : *layers) {
    absl::StatusOr<Descriptor> d = ParseDescriptor(l, "manifest layer");
    if (!d.ok()) return d.status();
    m.layers.push_back(*std::move(d));
  }
  absl::Status s = ParseAnnotations(*j, "manifest", m.annotations);
  if (!s.ok()) return s;
  return m;
}

absl::StatusOr<Index> ParseIndex(absl::string_view bytes, absl::string_view media_type) {
  absl::StatusOr<json> j = ParseJson(bytes, "index");
  if (!j.ok()) return j.status();
  Index idx;
  idx.media_type = std::string(media_type);
  auto ms = j->find("manifests");
  if (ms == j->end() || !ms->is_array()) return Shape("index", "no \"manifests\" array");
  for (const json& e : *ms) {
    absl::StatusOr<Descriptor> d = ParseDescriptor(e, "index entry");
    if (!d.ok()) return d.status();
    idx.manifests.push_back(*std::move(d));
  }
  absl::Status s = ParseAnnotations(*j, "index", idx.annotations);
  if (!s.ok()) return s;
  return idx;
}

absl::StatusOr<Descriptor> SelectPlatform(const Index& index, const Platform& want) {
  std::vector<std::string> have;
  for (const Descriptor& d : index.manifests) {
    if (!d.platform) continue;
    if (!IsManifestMediaType(d.media_type) && !IsIndexMediaType(d.media_type)) continue;
    if (PlatformMatches(want, *d.platform)) return d;
    have.push_back(d.platform->String());
  }
  return absl::NotFoundError(absl::StrCat(
      "no manifest for platform ", want.String(),
      " in the index (it has: ", have.empty() ? "none" : absl::StrJoin(have, ", "), ")"));
}

nlohmann::json DescriptorToJson(const Descriptor& d) {
  json j;
  j["mediaType"] = d.media_type;
  j["digest"] = d.digest;
  j["size"] = d.size;
  if (!d.annotations.empty()) j["annotations"] = d.annotations;
  if (!d.urls.empty()) j["urls"] = d.urls;
  if (d.platform) {
    json p;
    p["os"] = d.platform->os;
    p["architecture"] = d.platform->architecture;
    if (!d.platform->variant.empty()) p["variant"] = d.platform->variant;
    if (!d.platform->os_version.empty()) p["os.version"] = d.platform->os_version;
    j["platform"] = p;
  }
  return j;
}

}  // namespace accel::registry

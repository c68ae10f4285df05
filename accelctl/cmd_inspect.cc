// accelctl inspect: resolves an image reference and prints its manifest.

#include <cstdio>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "accelctl/commands.h"
#include "accelctl/registry_flags.h"
#include "registry/client.h"
#include "registry/manifest.h"
#include "registry/reference.h"

namespace accel::ctl {
namespace {

constexpr char kInspectUsage[] =
    R"(Usage: accelctl inspect [--platform OS/ARCH[/VARIANT]] [--raw] [registry flags] REF

Resolves REF (e.g. docker.io/library/alpine:3.19, 127.0.0.1:5000/app@sha256:...)
through the configured mirrors and prints the image manifest as JSON:
reference, digest, mediaType, platform, index (when REF names an index),
config, and each layer's digest, size, mediaType and annotations.
For an index, the entry for --platform (default: this machine's) is shown.

  --platform P   the platform to pick from an index
  --raw          print the manifest bytes exactly as the registry sent them:
                 REF's own manifest or index, or with --platform the
                 platform's manifest

)";

}  // namespace

int RunInspect(const Args& args) {
  RegistryFlags rf;
  std::string platform_text;
  bool raw = false;
  std::string ref_text;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    std::string error;
    if (a == "-h" || a == "--help") {
      std::printf("%s%s", kInspectUsage, kRegistryFlagsUsage);
      return 0;
    } else if (a == "--raw") {
      raw = true;
    } else if (ConsumeValueFlag(args, i, "--platform", platform_text, error) ||
               ConsumeRegistryFlag(args, i, rf, error)) {
      if (!error.empty()) return Fail(absl::StrCat("inspect: ", error), 2);
    } else if (!a.empty() && a[0] == '-') {
      return Fail(absl::StrCat("inspect: unknown flag \"", a, "\" (see --help)"), 2);
    } else if (ref_text.empty()) {
      ref_text = a;
    } else {
      return Fail(absl::StrCat("inspect: unexpected argument \"", a, "\" (see --help)"), 2);
    }
  }
  if (ref_text.empty()) return Fail("inspect: missing image reference (see --help)", 2);
  absl::StatusOr<registry::Reference> ref = registry::ParseReference(ref_text);
  if (!ref.ok()) return Fail(absl::StrCat("inspect: ", ref.status().message()), 2);
  registry::Platform platform = registry::DefaultPlatform();
  if (!platform_text.empty()) {
    absl::StatusOr<registry::Platform> p = registry::ParsePlatform(platform_text);
    if (!p.ok()) return Fail(absl::StrCat("inspect: ", p.status().message()), 2);
    platform = *p;
  }
  absl::StatusOr<std::unique_ptr<registry::Client>> client = MakeRegistryClient(rf);
  if (!client.ok()) return Fail(absl::StrCat("inspect: ", client.status().message()));

  if (raw && platform_text.empty()) {
    absl::StatusOr<registry::Client::FetchedManifest> m = (*client)->FetchManifest(*ref);
    if (!m.ok()) return Fail(absl::StrCat("inspect: ", m.status().message()));
    std::fwrite(m->bytes.data(), 1, m->bytes.size(), stdout);
    return 0;
  }
  absl::StatusOr<registry::Client::ResolvedImage> img = (*client)->ResolveImage(*ref, platform);
  if (!img.ok()) return Fail(absl::StrCat("inspect: ", img.status().message()));
  if (raw) {
    std::fwrite(img->manifest.bytes.data(), 1, img->manifest.bytes.size(), stdout);
    return 0;
  }
  nlohmann::json out;
  out["reference"] = ref->String();
  out["digest"] = img->manifest.descriptor.digest;
  out["mediaType"] = img->manifest.descriptor.media_type;
  out["size"] = img->manifest.descriptor.size;
  if (img->index) {
    out["index"] = {{"digest", img->index->descriptor.digest},
                    {"mediaType", img->index->descriptor.media_type},
                    {"size", img->index->descriptor.size}};
    out["platform"] = platform.String();
  }
  out["config"] = registry::DescriptorToJson(img->parsed.config);
  nlohmann::json layers = nlohmann::json::array();
  for (const registry::Descriptor& l : img->parsed.layers) {
    nlohmann::json j = registry::DescriptorToJson(l);
    if (!j.contains("annotations")) j["annotations"] = nlohmann::json::object();
    layers.push_back(j);
  }
  out["layers"] = layers;
  if (!img->parsed.annotations.empty()) out["annotations"] = img->parsed.annotations;
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

}  // namespace accel::ctl

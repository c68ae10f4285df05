#pragma once

// Image references, normalised the way docker and containerd do:
//
//   alpine                      -> docker.io/library/alpine:latest
//   user/app:1.0                -> docker.io/user/app:1.0
//   127.0.0.1:5000/app@sha256:… -> 127.0.0.1:5000/app@sha256:…
//   ghcr.io/o/app:v1@sha256:…   -> tag kept for display, digest wins for lookup
//
// The first path component is a registry host when it contains '.' or ':'
// or is "localhost"; otherwise the image lives on docker.io, and a
// single-component docker.io name gets the "library/" prefix.
// "index.docker.io" and "registry-1.docker.io" are spelled "docker.io".

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace accel::registry {

inline constexpr char kDockerHubDomain[] = "docker.io";
// The host that actually serves docker.io's distribution API.
inline constexpr char kDockerHubApiHost[] = "registry-1.docker.io";

struct Reference {
  std::string domain;      // "docker.io", "127.0.0.1:5000", "[::1]:5000"
  std::string repository;  // "library/alpine"
  std::string tag;         // "" when only a digest was given
  std::string digest;      // "" or a valid digest

  // "domain/repository" (no tag or digest).
  std::string Name() const;
  // Canonical form: domain/repository[:tag][@digest].
  std::string String() const;
  // What to ask the registry for: the digest if set, else the tag.
  const std::string& Object() const { return digest.empty() ? tag : digest; }
  // The same repository at `digest` (tag dropped).
  Reference WithDigest(absl::string_view digest) const;
};

// Parses and normalises `text`; a missing tag and digest means ":latest".
// InvalidArgument names what is wrong ("invalid reference \"X\": ...").
absl::StatusOr<Reference> ParseReference(absl::string_view text);

// Normalises a registry host name for lookups (hosts dir, credentials):
// lowercases it and maps docker.io's aliases to "docker.io".
std::string NormalizeRegistryHost(absl::string_view host);

}  // namespace accel::registry

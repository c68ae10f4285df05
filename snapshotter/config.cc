#include "snapshotter/config.h"

#include <toml++/toml.h>

#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "common/toml_util.h"

namespace accel::snapshotter {
namespace {

absl::Status TypeError(const std::string& origin, absl::string_view key, absl::string_view want) {
  return absl::InvalidArgumentError(absl::StrCat(origin, ": \"", key, "\" must be ", want));
}

absl::Status GetString(const toml::table& t, const std::string& origin, const char* key,
                       std::string& out) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return absl::OkStatus();
  auto v = n->value<std::string>();
  if (!v || !n->is_string()) return TypeError(origin, key, "a string");
  out = *v;
  return absl::OkStatus();
}

absl::Status GetInt(const toml::table& t, const std::string& origin, const char* key, int lo,
                    int hi, int& out) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return absl::OkStatus();
  if (!n->is_integer()) return TypeError(origin, key, "an integer");
  int64_t v = *n->value<int64_t>();
  if (v < lo || v > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": \"", key, "\" must be between ", lo, " and ", hi, ", got ", v));
  }
  out = static_cast<int>(v);
  return absl::OkStatus();
}

absl::Status GetBool(const toml::table& t, const std::string& origin, const char* key, bool& out) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return absl::OkStatus();
  if (!n->is_boolean()) return TypeError(origin, key, "true or false");
  out = *n->value<bool>();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Config> ParseConfig(const std::string& text, const std::string& origin) {
  ACCEL_ASSIGN_OR_RETURN(toml::table t, ParseToml(text, origin));
  Config c;
  for (const auto& [key, node] : t) {
    std::string k(key.str());
    // [registry] (credentials) is read by registry/ (LoadCredentials).
    if (k != "root" && k != "address" && k != "log_level" && k != "max_rpc_threads" &&
        k != "store" && k != "fuse_threads" && k != "lazy" && k != "hosts_dir" &&
        k != "chunk_cache_mib" && k != "background_fetch_mibps" && k != "prefetch" &&
        k != "cri_image_address" && k != "cri_upstream" && k != "registry" &&
        k != "fuse_lazy_threads" && k != "fd_store" && k != "restore_wait_seconds" &&
        k != "restore_threads" && k != "registry_request_timeout_seconds") {
      return absl::InvalidArgumentError(absl::StrCat(origin, ": unknown key \"", k, "\""));
    }
  }
  ACCEL_RETURN_IF_ERROR(GetString(t, origin, "root", c.root));
  ACCEL_RETURN_IF_ERROR(GetString(t, origin, "address", c.address));
  ACCEL_RETURN_IF_ERROR(GetString(t, origin, "log_level", c.log_level));
  ACCEL_RETURN_IF_ERROR(GetInt(t, origin, "max_rpc_threads", 2, 4096, c.max_rpc_threads));
  ACCEL_RETURN_IF_ERROR(GetString(t, origin, "store", c.store));
  ACCEL_RETURN_IF_ERROR(GetInt(t, origin, "fuse_threads", 1, 256, c.fuse_threads));
  ACCEL_RETURN_IF_ERROR(GetInt(t, origin, "fuse_lazy_threads", 1, 256, c.fuse_lazy_threads));
  ACCEL_RETURN_IF_ERROR(GetString(t, origin, "fd_store", c.fd_store));
  if (c.fd_store != "auto" && c.fd_store != "holder" && c.fd_store != "systemd" &&
      c.fd_store != "none") {
    return absl::InvalidArgumentError(absl::StrCat(
        origin, ": \"fd_store\" must be auto, holder, systemd or none, got \"", c.fd_store, "\""));
  }
  ACCEL_RETURN_IF_ERROR(
      GetInt(t, origin, "restore_wait_seconds", 0, 86400, c.restore_wait_seconds));
  ACCEL_RETURN_IF_ERROR(GetInt(t, origin, "restore_threads", 1, 256, c.restore_threads));
  ACCEL_RETURN_IF_ERROR(GetInt(t, origin, "registry_request_timeout_seconds", 1, 3600,
                               c.registry_request_timeout_seconds));
  ACCEL_RETURN_IF_ERROR(GetBool(t, origin, "lazy", c.lazy));
  ACCEL_RETURN_IF_ERROR(GetBool(t, origin, "prefetch", c.prefetch));
  ACCEL_RETURN_IF_ERROR(GetString(t, origin, "hosts_dir", c.hosts_dir));
  ACCEL_RETURN_IF_ERROR(GetInt(t, origin, "chunk_cache_mib", 64, 1 << 24, c.chunk_cache_mib));
  ACCEL_RETURN_IF_ERROR(
      GetInt(t, origin, "background_fetch_mibps", 0, 100000, c.background_fetch_mibps));
  ACCEL_RETURN_IF_ERROR(GetString(t, origin, "cri_image_address", c.cri_image_address));
  ACCEL_RETURN_IF_ERROR(GetString(t, origin, "cri_upstream", c.cri_upstream));
  if (c.cri_upstream.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": \"cri_upstream\" must not be empty"));
  }
  return c;
}

absl::StatusOr<Config> LoadConfig(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return Annotate(text.status(), "read config");
  absl::StatusOr<Config> c = ParseConfig(*text, path);
  if (c.ok()) c->path = path;
  return c;
}

}  // namespace accel::snapshotter

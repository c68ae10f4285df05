#include "common/mountinfo.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/fs_util.h"
#include "common/status_macros.h"

namespace accel {
namespace {

bool IsOctal(char c) { return c >= '0' && c <= '7'; }

// Undoes the kernel's octal escapes (\040 for a space, ...) and overlayfs's
// backslash escapes ("\:" for a colon inside a layer path).
std::string Unescape(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && IsOctal(s[i + 1]) && IsOctal(s[i + 2]) &&
        IsOctal(s[i + 3])) {
      out.push_back(
          static_cast<char>(((s[i + 1] - '0') << 6) | ((s[i + 2] - '0') << 3) | (s[i + 3] - '0')));
      i += 3;
    } else if (s[i] == '\\' && i + 1 < s.size() && (s[i + 1] == ':' || s[i + 1] == '\\')) {
      out.push_back(s[i + 1]);
      ++i;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// Splits an escaped option value on separators not preceded by a backslash.
std::vector<absl::string_view> SplitUnescaped(absl::string_view s, char sep) {
  std::vector<absl::string_view> parts;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;
      continue;
    }
    if (s[i] == sep) {
      parts.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  parts.push_back(s.substr(start));
  return parts;
}

}  // namespace

std::vector<MountInfoEntry> ParseMountInfo(absl::string_view text) {
  std::vector<MountInfoEntry> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
    // id parent dev root mountpoint options [optional...] - fstype source superopts
    size_t dash = 6;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (f.size() < 7 || dash + 2 >= f.size()) continue;
    MountInfoEntry e;
    if (!absl::SimpleAtoi(f[0], &e.id) || !absl::SimpleAtoi(f[1], &e.parent_id)) continue;
    e.dev = std::string(f[2]);
    e.mountpoint = Unescape(f[4]);
    e.fstype = std::string(f[dash + 1]);
    e.source = Unescape(f[dash + 2]);
    if (dash + 3 < f.size()) e.super_options = std::string(f[dash + 3]);
    out.push_back(std::move(e));
  }
  return out;
}

absl::StatusOr<std::vector<MountInfoEntry>> ReadMountInfo() {
  ACCEL_ASSIGN_OR_RETURN(std::string text, ReadFile("/proc/self/mountinfo"));
  return ParseMountInfo(text);
}

const MountInfoEntry* TopMountAt(const std::vector<MountInfoEntry>& mounts,
                                 absl::string_view mountpoint) {
  const MountInfoEntry* top = nullptr;
  for (const MountInfoEntry& e : mounts) {
    if (e.mountpoint != mountpoint) continue;
    bool covered = false;
    for (const MountInfoEntry& o : mounts) {
      if (o.parent_id == e.id && o.mountpoint == mountpoint && o.id != e.id) {
        covered = true;
        break;
      }
    }
    if (!covered) top = &e;
  }
  return top;
}

std::vector<std::string> OverlayDirs(const MountInfoEntry& entry) {
  std::vector<std::string> dirs;
  if (entry.fstype != "overlay") return dirs;
  for (absl::string_view opt : SplitUnescaped(entry.super_options, ',')) {
    size_t eq = opt.find('=');
    if (eq == absl::string_view::npos) continue;
    absl::string_view key = opt.substr(0, eq);
    absl::string_view value = opt.substr(eq + 1);
    if (key == "lowerdir" || key == "lowerdir+" || key == "datadir+") {
      for (absl::string_view layer : SplitUnescaped(value, ':')) {
        if (!layer.empty()) dirs.push_back(Unescape(layer));
      }
    } else if (key == "upperdir" || key == "workdir") {
      dirs.push_back(Unescape(value));
    }
  }
  return dirs;
}

}  // namespace accel

#include "accelctl/transfer.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/unique_fd.h"
#include "registry/blob_reader.h"

namespace accel::ctl {

using registry::Client;
using registry::Descriptor;
using registry::Reference;

void Progress::SetTotal(int blobs) {
  absl::MutexLock lock(&mu_);
  total_ = blobs;
}

void Progress::Bytes(int64_t delta) {
  absl::MutexLock lock(&mu_);
  bytes_ += delta;
  Draw(/*force=*/false);
}

void Progress::Done(const Descriptor& d, absl::string_view how) {
  absl::MutexLock lock(&mu_);
  ++done_;
  if (tty_) {
    std::fprintf(stdout, "\r\033[K%s %s (%lld bytes)\n", std::string(how).c_str(), d.digest.c_str(),
                 static_cast<long long>(d.size));
    Draw();
  } else {
    std::fprintf(stdout, "blob %s %s (%lld bytes)\n", d.digest.c_str(), std::string(how).c_str(),
                 static_cast<long long>(d.size));
  }
}

void Progress::AddTotal(int blobs, int64_t bytes) {
  absl::MutexLock lock(&mu_);
  total_ += blobs;
  total_bytes_ += bytes;
}

void Progress::Step() {
  absl::MutexLock lock(&mu_);
  ++done_;
  Draw();
}

void Progress::Line(const std::string& text) {
  absl::MutexLock lock(&mu_);
  if (tty_) std::fprintf(stdout, "\r\033[K");
  std::fprintf(stdout, "%s\n", text.c_str());
  std::fflush(stdout);
}

void Progress::Finish() {
  absl::MutexLock lock(&mu_);
  if (tty_) std::fprintf(stdout, "\r\033[K");
}

void Progress::Draw(bool force) {
  if (!tty_) return;
  const absl::Time now = absl::Now();
  if (!force && now - last_draw_ < absl::Milliseconds(100)) return;
  last_draw_ = now;
  if (total_bytes_ > 0) {
    std::fprintf(stdout, "\r\033[Kblobs %d/%d, %.1f of %.1f MiB (%d%%)", done_, total_,
                 static_cast<double>(bytes_) / (1 << 20),
                 static_cast<double>(total_bytes_) / (1 << 20),
                 static_cast<int>(std::min<int64_t>(100, bytes_ * 100 / total_bytes_)));
  } else {
    std::fprintf(stdout, "\r\033[Kblobs %d/%d, %.1f MiB transferred", done_, total_,
                 static_cast<double>(bytes_) / (1 << 20));
  }
  std::fflush(stdout);
}

absl::Status CopyBlob(Client& client, const Reference& src, const Reference& dst,
                      const Descriptor& d, Progress& progress) {
  ACCEL_ASSIGN_OR_RETURN(std::optional<int64_t> have, client.StatBlob(dst, d.digest));
  if (have) {
    progress.Done(d, "exists");
    return absl::OkStatus();
  }
  if (src.domain == dst.domain && src.repository != dst.repository) {
    absl::StatusOr<bool> mounted = client.MountBlob(dst, d, src.repository);
    if (mounted.ok() && *mounted) {
      progress.Done(d, "mounted");
      return absl::OkStatus();
    }
  }
  const char* tmpdir = std::getenv("TMPDIR");
  std::string path = absl::StrCat(tmpdir && *tmpdir ? tmpdir : "/tmp", "/accelctl-blob-XXXXXX");
  UniqueFd fd(::mkstemp(path.data()));
  if (!fd.valid()) return absl::InternalError(absl::StrCat("create temporary file ", path));
  auto remove = absl::MakeCleanup([&] { ::unlink(path.c_str()); });
  int64_t last = 0;
  ACCEL_RETURN_IF_ERROR(client.FetchBlob(
      src, d,
      [&](absl::string_view chunk) -> absl::Status {
        size_t off = 0;
        while (off < chunk.size()) {
          ssize_t w = ::write(fd.get(), chunk.data() + off, chunk.size() - off);
          if (w < 0 && errno == EINTR) continue;
          if (w < 0) return absl::InternalError(absl::StrCat("write ", path));
          off += static_cast<size_t>(w);
        }
        return absl::OkStatus();
      },
      [&](int64_t done) {
        progress.Bytes(done - last);
        last = done;
      }));
  ACCEL_ASSIGN_OR_RETURN(std::unique_ptr<registry::BlobReader> reader,
                         registry::OpenFileBlobReader(path));
  last = 0;
  ACCEL_RETURN_IF_ERROR(client.PushBlob(dst, d, *reader, [&](int64_t done) {
    progress.Bytes(done - last);
    last = done;
  }));
  progress.Done(d, "copied");
  return absl::OkStatus();
}

std::thread StartDownload(Client& client, const Reference& src, const Descriptor& desc,
                          BlobPipe& pipe) {
  return std::thread([&client, src, desc, &pipe] {
    absl::Status s =
        client.FetchBlob(src, desc, [&](absl::string_view chunk) { return pipe.Push(chunk); });
    pipe.Close(s.ok() ? s : Annotate(s, "download ", desc.digest));
  });
}

}  // namespace accel::ctl

#include "accelctl/transfer.h"

#include <unistd.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/fs_util.h"
#include "common/status_macros.h"
#include "common/unique_fd.h"
#include "registry/blob_reader.h"

namespace accel::ctl {

using registry::Client;
using registry::Descriptor;
using registry::Reference;

void BlobDone(Progress& progress, const Descriptor& d, absl::string_view how) {
  progress.StepLine(progress.tty()
                        ? absl::StrCat(how, " ", d.digest, " (", d.size, " bytes)")
                        : absl::StrCat("blob ", d.digest, " ", how, " (", d.size, " bytes)"));
}

absl::Status CopyBlob(Client& client, const Reference& src, const Reference& dst,
                      const Descriptor& d, Progress& progress) {
  ACCEL_ASSIGN_OR_RETURN(std::optional<int64_t> have, client.StatBlob(dst, d.digest));
  if (have) {
    BlobDone(progress, d, "exists");
    return absl::OkStatus();
  }
  if (src.domain == dst.domain && src.repository != dst.repository) {
    absl::StatusOr<bool> mounted = client.MountBlob(dst, d, src.repository);
    if (mounted.ok() && *mounted) {
      BlobDone(progress, d, "mounted");
      return absl::OkStatus();
    }
  }
  ACCEL_ASSIGN_OR_RETURN(TempFile staged, CreateTempFile("accelctl-blob"));
  auto remove = absl::MakeCleanup([&] { ::unlink(staged.path.c_str()); });
  int64_t last = 0;
  ACCEL_RETURN_IF_ERROR(client.FetchBlob(
      src, d,
      [&](absl::string_view chunk) { return WriteAll(staged.fd.get(), chunk, staged.path); },
      [&](int64_t done) {
        progress.Bytes(done - last);
        last = done;
      }));
  ACCEL_ASSIGN_OR_RETURN(std::unique_ptr<registry::BlobReader> reader,
                         registry::OpenFileBlobReader(staged.path));
  last = 0;
  ACCEL_RETURN_IF_ERROR(client.PushBlob(dst, d, *reader, [&](int64_t done) {
    progress.Bytes(done - last);
    last = done;
  }));
  BlobDone(progress, d, "copied");
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

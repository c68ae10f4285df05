#include "registry/blob_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/unique_fd.h"

namespace accel::registry {
namespace {

class FileBlobReader : public BlobReader {
 public:
  FileBlobReader(UniqueFd fd, int64_t size, std::string path)
      : fd_(std::move(fd)), size_(size), path_(std::move(path)) {}

  int64_t size() const override { return size_; }

  absl::StatusOr<std::string> ReadAt(int64_t offset, int64_t length) override {
    if (offset < 0 || length < 0) return absl::InvalidArgumentError("negative offset or length");
    if (offset > size_) {
      return absl::OutOfRangeError(absl::StrCat("offset ", offset, " past the end (", size_, ")"));
    }
    int64_t n = std::min(length, size_ - offset);
    std::string out(static_cast<size_t>(n), '\0');
    int64_t done = 0;
    while (done < n) {
      ssize_t r = ::pread(fd_.get(), out.data() + done, n - done, offset + done);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return ErrnoToStatus(errno, absl::StrCat("read ", path_));
      if (r == 0) return absl::DataLossError(absl::StrCat(path_, " shrank while reading"));
      done += r;
    }
    return out;
  }

 private:
  const UniqueFd fd_;
  const int64_t size_;
  const std::string path_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<BlobReader>> OpenFileBlobReader(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoToStatus(errno, absl::StrCat("open ", path));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoToStatus(errno, absl::StrCat("stat ", path));
  return std::unique_ptr<BlobReader>(new FileBlobReader(std::move(fd), st.st_size, path));
}

}  // namespace accel::registry

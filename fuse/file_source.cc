#include "fuse/file_source.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/errno_status.h"

namespace accel::fuse {
namespace {

class DataFileSource final : public FileSource {
 public:
  DataFileSource(UniqueFd fd, uint64_t data_size) : fd_(std::move(fd)), data_size_(data_size) {}

  absl::StatusOr<size_t> ReadAt(const Node& node, uint64_t offset, char* buf, size_t len) override {
    if (!InRange(node)) {
      return absl::DataLossError(absl::StrCat("file ", node.ino, " range [", node.data_offset,
                                              ", +", node.size, ") outside the data file (",
                                              data_size_, " bytes)"));
    }
    if (offset >= node.size) return 0;
    const size_t want = static_cast<size_t>(std::min<uint64_t>(len, node.size - offset));
    size_t done = 0;
    while (done < want) {
      ssize_t n = ::pread(fd_.get(), buf + done, want - done,
                          static_cast<off_t>(node.data_offset + offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoToStatus(errno, absl::StrCat("read data file for file ", node.ino));
      }
      if (n == 0) {
        return absl::DataLossError(absl::StrCat("data file ends before file ", node.ino, " does"));
      }
      done += static_cast<size_t>(n);
    }
    return done;
  }

  bool SpliceSource(const Node& node, int* fd, uint64_t* fd_offset) override {
    if (!InRange(node)) return false;  // ReadAt reports the error
    *fd = fd_.get();
    *fd_offset = node.data_offset;
    return true;
  }

 private:
  bool InRange(const Node& node) const {
    return S_ISREG(node.mode) && node.data_offset <= data_size_ &&
           node.size <= data_size_ - node.data_offset;
  }

  const UniqueFd fd_;
  const uint64_t data_size_;
};

}  // namespace

std::unique_ptr<FileSource> MakeDataFileSource(UniqueFd data_fd, uint64_t data_size) {
  return std::make_unique<DataFileSource>(std::move(data_fd), data_size);
}

}  // namespace accel::fuse

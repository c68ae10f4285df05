#include "accelctl/pull_interrupt.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace accel::ctl {
namespace {

// The write end of the pipe the handler writes the signal number to (-1:
// no pull is running).
std::atomic<int> g_interrupt_pipe{-1};

void OnInterrupt(int sig) {
  const int saved = errno;
  const unsigned char b = static_cast<unsigned char>(sig);
  const int fd = g_interrupt_pipe.load();
  if (fd >= 0) [[maybe_unused]]
    ssize_t n = ::write(fd, &b, 1);
  errno = saved;
}

}  // namespace

InterruptCleanup::InterruptCleanup(std::string address, std::string ns, LeaseBox& box) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return;  // no cleanup on signals; the lease still expires
  read_fd_ = fds[0];
  write_fd_ = fds[1];
  ::fcntl(write_fd_, F_SETFL, O_NONBLOCK);  // the handler never blocks
  g_interrupt_pipe = write_fd_;
  for (int sig : kSignals) {
    struct sigaction old {};
    ::sigaction(sig, nullptr, &old);
    if (old.sa_handler == SIG_IGN) continue;
    struct sigaction sa {};
    sa.sa_handler = OnInterrupt;
    sa.sa_flags = SA_RESETHAND;  // a second signal kills at once (if cleanup hangs)
    sigemptyset(&sa.sa_mask);
    ::sigaction(sig, &sa, nullptr);
    installed_.push_back({sig, old});
  }
  thread_ = std::thread([this, address = std::move(address), ns = std::move(ns), &box] {
    unsigned char b = 0;
    while (::read(read_fd_, &b, 1) < 0 && errno == EINTR) {
    }
    if (b == 0) return;  // the pull ended
    const int sig = b;
    box.MarkInterrupted();  // the main thread now stays quiet and waits for the exit
    box.TakeAndRun([&](const std::string& lease) {
      std::fprintf(stderr, "\naccelctl: pull: interrupted (%s)%s\n", strsignal(sig),
                   lease.empty() ? "" : "; removing what it wrote");
      if (!lease.empty()) {
        Containerd(address, ns).DeleteLeaseId(lease, /*sync=*/true, absl::Seconds(60));
      }
    });
    std::fflush(stdout);
    std::_Exit(128 + sig);
  });
}

InterruptCleanup::~InterruptCleanup() {
  if (read_fd_ < 0) return;
  for (const auto& [sig, old] : installed_) ::sigaction(sig, &old, nullptr);
  g_interrupt_pipe = -1;  // before closing: a late handler must not write to a reused fd
  const unsigned char zero = 0;
  [[maybe_unused]] ssize_t n = ::write(write_fd_, &zero, 1);
  thread_.join();  // if a signal came first, this never returns: the thread exits
  ::close(read_fd_);
  ::close(write_fd_);
}

}  // namespace accel::ctl

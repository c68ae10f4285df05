// Client against a tiny in-process HTTP server on 127.0.0.1 (port 0) that
// serves one blob with Range support and injects faults.

#include "registry/client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/digest.h"
#include "tests/testing/status_matchers.h"

namespace accel::registry {
namespace {

using ::accel::testing::StatusIs;

// Serves GET/HEAD /v2/repo/blobs/<digest> of `blob`. Faults, consumed in
// order by GETs: "drop:N" (send N body bytes, then close), "503". With
// `authorization` set, requests without exactly that Authorization header
// get 401 with a Basic challenge.
class BlobServer {
 public:
  BlobServer(std::string blob, std::vector<std::string> faults, std::string authorization = "")
      : blob_(std::move(blob)),
        authorization_(std::move(authorization)),
        faults_(std::move(faults)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    ::listen(fd_, 16);
    socklen_t len = sizeof(a);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Loop(); });
  }
  ~BlobServer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  std::string host() const { return absl::StrCat("127.0.0.1:", port_); }
  std::vector<std::string> ranges() {
    absl::MutexLock l(&mu_);
    return ranges_;
  }
  // The Authorization header of each request ("" if none), when
  // `authorization` was given.
  std::vector<std::string> authorizations() {
    absl::MutexLock l(&mu_);
    return authorizations_;
  }

 private:
  void Loop() {
    while (!stop_) {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      Serve(c);
      ::close(c);
    }
  }
  static void Write(int c, absl::string_view s) {
    while (!s.empty()) {
      ssize_t n = ::write(c, s.data(), s.size());
      if (n <= 0) return;
      s.remove_prefix(n);
    }
  }
  // One request per connection (Connection: close).
  void Serve(int c) {
    std::string req;
    char buf[4096];
    while (!absl::StrContains(req, "\r\n\r\n")) {
      ssize_t n = ::read(c, buf, sizeof(buf));
      if (n <= 0) return;
      req.append(buf, n);
    }
    bool head = absl::StartsWith(req, "HEAD ");
    if (!authorization_.empty()) {
      std::string got;
      size_t a = req.find("\r\nAuthorization: ");
      if (a != std::string::npos) {
        size_t e = req.find("\r\n", a + 2);
        got = req.substr(a + 17, e - a - 17);
      }
      {
        absl::MutexLock l(&mu_);
        authorizations_.push_back(got);
      }
      if (got != authorization_) {
        Write(c,
              "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"test\"\r\n"
              "Content-Length: 0\r\nConnection: close\r\n\r\n");
        return;
      }
    }
    int64_t from = 0, to = static_cast<int64_t>(blob_.size()) - 1;
    bool ranged = false;
    size_t r = req.find("\r\nRange: bytes=");
    std::string range;
    if (r != std::string::npos) {
      size_t e = req.find("\r\n", r + 2);
      range = req.substr(r + 15, e - r - 15);
      size_t dash = range.find('-');
      absl::SimpleAtoi(range.substr(0, dash), &from);
      if (dash + 1 < range.size()) absl::SimpleAtoi(range.substr(dash + 1), &to);
      ranged = true;
    }
    std::string fault;
    {
      absl::MutexLock l(&mu_);
      if (!head) ranges_.push_back(range);
      if (!head && !faults_.empty()) {
        fault = faults_.front();
        faults_.erase(faults_.begin());
      }
    }
    if (fault == "503") {
      Write(
          c,
          "HTTP/1.1 503 Busy\r\nRetry-After: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      return;
    }
    std::string body = blob_.substr(from, to - from + 1);
    std::string hdr =
        absl::StrCat(ranged ? "HTTP/1.1 206 Partial Content\r\n" : "HTTP/1.1 200 OK\r\n",
                     "Content-Length: ", body.size(), "\r\nConnection: close\r\n");
    if (ranged) {
      absl::StrAppend(&hdr, "Content-Range: bytes ", from, "-", to, "/", blob_.size(), "\r\n");
    }
    Write(c, hdr + "\r\n");
    if (head) return;
    if (absl::StartsWith(fault, "drop:")) {
      int64_t n = 0;
      absl::SimpleAtoi(fault.substr(5), &n);
      Write(c, body.substr(0, n));
      return;
    }
    Write(c, body);
  }

  const std::string blob_;
  const std::string authorization_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<std::string> faults_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> ranges_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> authorizations_ ABSL_GUARDED_BY(mu_);
};

std::string TestBlob() {
  std::string s;
  for (uint32_t i = 0; i < 300000; ++i) s.push_back(static_cast<char>((i * 7919u) >> 3));
  return s;
}

std::unique_ptr<Client> MakeClient(std::vector<absl::Duration>* sleeps) {
  ClientOptions o;
  o.hosts.plain_http = true;
  o.retry.max_attempts = 3;
  o.sleep = [sleeps](absl::Duration d) { sleeps->push_back(d); };
  absl::StatusOr<std::unique_ptr<Client>> c = Client::Create(std::move(o));
  EXPECT_TRUE(c.ok()) << c.status();
  return std::move(c).value();
}

Descriptor BlobDescriptor(const std::string& blob) {
  Descriptor d;
  d.media_type = media::kOciLayerGzip;
  d.digest = Sha256::Of(blob);
  d.size = static_cast<int64_t>(blob.size());
  return d;
}

TEST(ClientTest, FetchBlobResumesAfterDroppedConnections) {
  std::string blob = TestBlob();
  BlobServer server(blob, {"drop:1000", "503", "drop:100000"});
  std::vector<absl::Duration> sleeps;
  auto client = MakeClient(&sleeps);
  ASSERT_OK_AND_ASSIGN(Reference repo, ParseReference(server.host() + "/repo"));
  std::string got;
  ASSERT_OK(client->FetchBlob(repo, BlobDescriptor(blob), [&](absl::string_view c) {
    got.append(c.data(), c.size());
    return absl::OkStatus();
  }));
  EXPECT_EQ(got, blob);
  EXPECT_EQ(server.ranges(), (std::vector<std::string>{"", "1000-", "1000-", "101000-"}));
  EXPECT_EQ(sleeps.size(), 3u);
}

TEST(ClientTest, DigestMismatchIsDataLossAndNotRetried) {
  std::string blob = TestBlob();
  BlobServer server(blob, {});
  std::vector<absl::Duration> sleeps;
  auto client = MakeClient(&sleeps);
  ASSERT_OK_AND_ASSIGN(Reference repo, ParseReference(server.host() + "/repo"));
  Descriptor d = BlobDescriptor(blob);
  d.digest = Sha256::Of("something else");
  absl::StatusOr<std::string> got = client->FetchBlobBytes(repo, d, 1 << 20);
  EXPECT_THAT(got, StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_EQ(server.ranges().size(), 1u);
  // A blob longer than its descriptor is refused too.
  d = BlobDescriptor(blob);
  d.size -= 10;
  EXPECT_THAT(client->FetchBlobBytes(repo, d, 1 << 20), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(ClientTest, BlobReaderReadsRangesAndResumes) {
  std::string blob = TestBlob();
  BlobServer server(blob, {"drop:500"});
  std::vector<absl::Duration> sleeps;
  auto client = MakeClient(&sleeps);
  ASSERT_OK_AND_ASSIGN(Reference repo, ParseReference(server.host() + "/repo"));
  std::unique_ptr<BlobReader> r = client->OpenBlob(repo, BlobDescriptor(blob));
  EXPECT_EQ(r->size(), static_cast<int64_t>(blob.size()));
  ASSERT_OK_AND_ASSIGN(std::string part, r->ReadAt(1000, 2000));
  EXPECT_EQ(part, blob.substr(1000, 2000));
  EXPECT_EQ(server.ranges(), (std::vector<std::string>{"1000-2999", "1500-2999"}));
  ASSERT_OK_AND_ASSIGN(std::string tail, r->ReadAt(blob.size() - 10, 100));
  EXPECT_EQ(tail, blob.substr(blob.size() - 10));
  ASSERT_OK_AND_ASSIGN(std::string none, r->ReadAt(blob.size(), 5));
  EXPECT_EQ(none, "");
  EXPECT_THAT(r->ReadAt(blob.size() + 1, 5), StatusIs(absl::StatusCode::kOutOfRange));
}

TEST(ClientTest, StatBlob) {
  std::string blob = TestBlob();
  BlobServer server(blob, {});
  std::vector<absl::Duration> sleeps;
  auto client = MakeClient(&sleeps);
  ASSERT_OK_AND_ASSIGN(Reference repo, ParseReference(server.host() + "/repo"));
  ASSERT_OK_AND_ASSIGN(std::optional<int64_t> size,
                       client->StatBlob(repo, Sha256::Of(blob), kCapPull));
  ASSERT_TRUE(size.has_value());
  EXPECT_EQ(*size, static_cast<int64_t>(blob.size()));
}

TEST(ClientTest, SetCredentialsIsUsedForItsHostAndNeverInErrors) {
  std::string blob = TestBlob();
  Credentials right{"alice", "Rt-pw-4711", ""};
  BlobServer server(blob, {}, BasicAuthorization(right));
  std::vector<absl::Duration> sleeps;
  auto client = MakeClient(&sleeps);
  ASSERT_OK_AND_ASSIGN(Reference repo, ParseReference(server.host() + "/repo"));
  Descriptor d = BlobDescriptor(blob);

  // No credentials: refused, and the error says so.
  absl::StatusOr<std::string> got = client->ReadBlobRange(repo, d, 0, 100);
  EXPECT_THAT(got, StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_TRUE(absl::StrContains(got.status().message(), server.host())) << got.status();

  // Credentials for another host do not apply.
  client->SetCredentials("other.example:5000", right);
  EXPECT_THAT(client->ReadBlobRange(repo, d, 0, 100), StatusIs(absl::StatusCode::kUnauthenticated));

  // Wrong ones: refused; neither password appears in the error.
  client->SetCredentials(server.host(), Credentials{"alice", "Wr-pw-0815", ""});
  got = client->ReadBlobRange(repo, d, 0, 100);
  EXPECT_THAT(got, StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_FALSE(absl::StrContains(got.status().message(), "Wr-pw-0815")) << got.status();
  EXPECT_FALSE(absl::StrContains(got.status().message(), "Rt-pw-4711")) << got.status();
  EXPECT_FALSE(
      absl::StrContains(got.status().ToString(),
                        BasicAuthorization(Credentials{"alice", "Wr-pw-0815", ""}).substr(6)))
      << got.status();

  // Replaced by the right ones: used at once.
  client->SetCredentials(server.host(), right);
  ASSERT_OK_AND_ASSIGN(std::string part, client->ReadBlobRange(repo, d, 1000, 100));
  EXPECT_EQ(part, blob.substr(1000, 100));
  EXPECT_EQ(server.authorizations().back(), BasicAuthorization(right));

  // Empty credentials remove the override: anonymous again.
  client->SetCredentials(server.host(), Credentials{});
  got = client->ReadBlobRange(repo, d, 0, 100);
  EXPECT_THAT(got, StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_FALSE(absl::StrContains(got.status().message(), "Rt-pw-4711")) << got.status();
}

TEST(ClientTest, UnreachableHostFailsWithItsName) {
  std::vector<absl::Duration> sleeps;
  auto client = MakeClient(&sleeps);
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  std::string host = absl::StrCat("127.0.0.1:", ntohs(a.sin_port));
  ::close(fd);  // nothing listens there now
  ASSERT_OK_AND_ASSIGN(Reference ref, ParseReference(host + "/repo:tag"));
  absl::StatusOr<Client::FetchedManifest> m = client->FetchManifest(ref);
  EXPECT_THAT(m, StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_NE(m.status().message().find(host), absl::string_view::npos);
  EXPECT_EQ(sleeps.size(), 2u);  // 3 attempts on the only host
}

}  // namespace
}  // namespace accel::registry

// Client's blob operations: downloads (resumed across requests and hosts,
// verified), range reads, mounts and uploads.

#include <algorithm>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "registry/client.h"
#include "registry/client_internal.h"
#include "registry/http_error.h"
#include "registry/range.h"

namespace accel::registry {

// Holds one of the client's transfer slots for its lifetime.
class Client::TransferSlot {
 public:
  explicit TransferSlot(Client* c) : c_(c) {
    c_->slots_mu_.LockWhen(absl::Condition(
        +[](int* free) { return *free > 0; }, &c_->free_slots_));
    --c_->free_slots_;
    c_->slots_mu_.Unlock();
  }
  ~TransferSlot() {
    absl::MutexLock lock(&c_->slots_mu_);
    ++c_->free_slots_;
  }
  TransferSlot(const TransferSlot&) = delete;
  TransferSlot& operator=(const TransferSlot&) = delete;

 private:
  Client* c_;
};

namespace {

// Resolves an upload Location against the host.
std::string ResolveLocation(const RegistryHost& host, const std::string& location) {
  if (absl::StartsWith(location, "http://") || absl::StartsWith(location, "https://")) {
    return location;
  }
  if (absl::StartsWith(location, "/")) return absl::StrCat(host.Origin(), location);
  return absl::StrCat(host.BaseUrl(), "/", location);
}

std::string WithQuery(const std::string& url, absl::string_view key, absl::string_view value) {
  // Only used with digests, which need no escaping.
  return absl::StrCat(url, absl::StrContains(url, '?') ? "&" : "?", key, "=", value);
}

bool SameOrigin(const RegistryHost& host, const std::string& url) {
  std::string origin = host.Origin();
  return absl::StartsWith(url, origin) &&
         (url.size() == origin.size() || url[origin.size()] == '/' || url[origin.size()] == '?');
}

}  // namespace

absl::Status Client::FetchBlobFromHost(
    const RegistryHost& host, const HostCall& call, const Reference& repo, const Descriptor& desc,
    int64_t first, int64_t last, int64_t& received,
    const std::function<absl::Status(absl::string_view)>& consume) {
  std::string url = absl::StrCat(host.BaseUrl(), "/", repo.repository, "/blobs/", desc.digest);
  // `received` counts bytes of [first, last] already consumed.
  const int64_t want = last >= 0 ? last - first + 1 : desc.size - first;
  absl::Status abort_reason;
  int64_t skip = 0;
  int short_bodies = 0;
  while (received < want) {
    abort_reason = absl::OkStatus();
    SendOptions so;
    so.has_fallback = call.has_fallback;
    so.progress = [&received] { return received; };
    absl::StatusOr<HttpResponse> resp = Send(
        host, {PullScope(repo.repository)},
        [&] {
          HttpRequest r;
          r.url = url;
          int64_t from = first + received;
          bool whole = from == 0 && last < 0;
          if (!whole) r.headers.emplace_back("Range", RangeHeader(from, last));
          r.on_start = [&, from](const HttpResponse& head) {
            absl::StatusOr<RangePlan> plan =
                PlanRangeResponse(head.status, head.Header("content-range"), from, last, desc.size);
            if (!plan.ok()) {
              abort_reason = plan.status();
              return false;
            }
            skip = plan->skip;
            return true;
          };
          r.on_body = [&](absl::string_view chunk) {
            if (skip > 0) {
              int64_t k = std::min<int64_t>(skip, chunk.size());
              chunk.remove_prefix(k);
              skip -= k;
            }
            if (chunk.empty()) return true;
            if (received + static_cast<int64_t>(chunk.size()) > want) {
              if (last >= 0) {
                // A range answer may run past what we asked for; keep ours.
                chunk = chunk.substr(0, want - received);
              } else {
                abort_reason = absl::DataLossError(absl::StrCat("blob ", desc.digest,
                                                                " is larger than its descriptor's ",
                                                                desc.size, " bytes"));
                return false;
              }
            }
            absl::Status s = consume(chunk);
            if (!s.ok()) {
              abort_reason = s;
              return false;
            }
            received += static_cast<int64_t>(chunk.size());
            return received < want || last < 0;
          };
          return r;
        },
        so);
    if (!abort_reason.ok()) return abort_reason;
    if (!resp.ok()) {
      // A range read that stopped itself early once it had everything.
      if (resp.status().code() == absl::StatusCode::kCancelled && received >= want) break;
      return resp.status();
    }
    if (resp->status != 200 && resp->status != 206) return HttpError(*resp);
    if (received < want) {
      // The body ended early without a transport error; ask for the rest.
      if (++short_bodies >= options_.retry.max_attempts) {
        return absl::UnavailableError(absl::StrCat("blob ", desc.digest, " ended after ",
                                                   first + received, " bytes, want ",
                                                   first + want));
      }
      ACCEL_LOG(kDebug, "msg=\"short blob body, resuming\"", LogField("digest", desc.digest));
    }
  }
  return absl::OkStatus();
}

absl::Status Client::FetchBlob(const Reference& repo, const Descriptor& desc,
                               const std::function<absl::Status(absl::string_view)>& sink,
                               const ProgressFn& progress) {
  ACCEL_ASSIGN_OR_RETURN(DigestVerifier verifier, DigestVerifier::Create(desc.digest));
  if (desc.size < 0) return absl::InvalidArgumentError("blob descriptor with negative size");
  TransferSlot slot(this);
  int64_t received = 0;
  std::string what = absl::StrCat("fetch blob ", desc.digest, " from ", repo.Name());
  auto consume = [&](absl::string_view chunk) -> absl::Status {
    verifier.Update(chunk);
    ACCEL_RETURN_IF_ERROR(sink(chunk));
    if (progress) progress(received + static_cast<int64_t>(chunk.size()));
    return absl::OkStatus();
  };
  if (desc.size == 0) return Annotate(verifier.Verify(), what);
  ACCEL_RETURN_IF_ERROR(ForEachHost(
      repo.domain, kCapPull, what, [&](const RegistryHost& host, HostCall& call) -> absl::Status {
        if (received > 0) {
          ACCEL_LOG(kInfo, "msg=\"resuming blob on next host\"", LogField("digest", desc.digest),
                    LogField("host", host.Origin()), LogField("offset", absl::StrCat(received)));
        }
        return FetchBlobFromHost(host, call, repo, desc, 0, -1, received, consume);
      }));
  return Annotate(verifier.Verify(), what);
}

absl::StatusOr<std::string> Client::FetchBlobBytes(const Reference& repo, const Descriptor& desc,
                                                   int64_t max_size) {
  if (desc.size > max_size) {
    return absl::ResourceExhaustedError(absl::StrCat("blob ", desc.digest, " has ", desc.size,
                                                     " bytes, more than the ", max_size,
                                                     " allowed here"));
  }
  std::string out;
  out.reserve(static_cast<size_t>(std::max<int64_t>(desc.size, 0)));
  ACCEL_RETURN_IF_ERROR(FetchBlob(repo, desc, [&](absl::string_view c) {
    out.append(c.data(), c.size());
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<std::string> Client::ReadBlobRange(const Reference& repo, const Descriptor& desc,
                                                  int64_t offset, int64_t length) {
  if (offset < 0 || length < 0) return absl::InvalidArgumentError("negative offset or length");
  if (offset > desc.size) {
    return absl::OutOfRangeError(absl::StrCat("offset ", offset, " past the end of blob ",
                                              desc.digest, " (", desc.size, " bytes)"));
  }
  length = std::min(length, desc.size - offset);
  std::string out;
  if (length == 0) return out;
  out.reserve(static_cast<size_t>(length));
  TransferSlot slot(this);
  int64_t received = 0;
  std::string what =
      absl::StrCat("read ", RangeHeader(offset, offset + length - 1), " of blob ", desc.digest);
  ACCEL_RETURN_IF_ERROR(ForEachHost(
      repo.domain, kCapPull, what, [&](const RegistryHost& host, HostCall& call) -> absl::Status {
        return FetchBlobFromHost(host, call, repo, desc, offset, offset + length - 1, received,
                                 [&](absl::string_view c) {
                                   out.append(c.data(), c.size());
                                   return absl::OkStatus();
                                 });
      }));
  return out;
}

namespace {

class RegistryBlobReader : public BlobReader {
 public:
  RegistryBlobReader(Client* client, Reference repo, Descriptor desc)
      : client_(client), repo_(std::move(repo)), desc_(std::move(desc)) {}
  int64_t size() const override { return desc_.size; }
  absl::StatusOr<std::string> ReadAt(int64_t offset, int64_t length) override {
    return client_->ReadBlobRange(repo_, desc_, offset, length);
  }

 private:
  Client* const client_;
  const Reference repo_;
  const Descriptor desc_;
};

}  // namespace

std::unique_ptr<BlobReader> Client::OpenBlob(const Reference& repo, const Descriptor& desc) {
  return std::make_unique<RegistryBlobReader>(this, repo, desc);
}

absl::StatusOr<bool> Client::MountBlob(const Reference& repo, const Descriptor& desc,
                                       absl::string_view from_repository) {
  ACCEL_RETURN_IF_ERROR(ValidateDigest(desc.digest));
  bool mounted = false;
  std::string what = absl::StrCat("mount blob ", desc.digest, " into ", repo.Name());
  std::vector<std::string> scopes = {PushScope(repo.repository), PullScope(from_repository)};
  ACCEL_RETURN_IF_ERROR(ForEachHost(
      repo.domain, kCapPush, what, [&](const RegistryHost& host, HostCall& call) -> absl::Status {
        call.stop = true;  // only the first push host
        std::string url =
            absl::StrCat(host.BaseUrl(), "/", repo.repository,
                         "/blobs/uploads/?mount=", desc.digest, "&from=", from_repository);
        ACCEL_ASSIGN_OR_RETURN(HttpResponse resp, Send(
                                                      host, scopes,
                                                      [&] {
                                                        HttpRequest r;
                                                        r.method = "POST";
                                                        r.url = url;
                                                        return r;
                                                      },
                                                      WithFallback(call)));
        if (resp.status == 201) {
          mounted = true;
          return absl::OkStatus();
        }
        if (resp.status == 202) {
          // Declined; an upload session was opened instead. Cancel it.
          std::string loc = resp.Header("location");
          if (!loc.empty()) {
            std::string del = ResolveLocation(host, loc);
            SendOptions so;
            so.retry = false;
            so.authorize = SameOrigin(host, del);
            (void)Send(
                host, scopes,
                [&] {
                  HttpRequest r;
                  r.method = "DELETE";
                  r.url = del;
                  return r;
                },
                so);
          }
          return absl::OkStatus();
        }
        return HttpError(resp);
      }));
  return mounted;
}

absl::Status Client::PushBlob(const Reference& repo, const Descriptor& desc, BlobReader& source,
                              const ProgressFn& progress) {
  ACCEL_RETURN_IF_ERROR(ValidateDigest(desc.digest));
  if (source.size() != desc.size) {
    return absl::InvalidArgumentError(absl::StrCat("push blob ", desc.digest, ": source has ",
                                                   source.size(), " bytes, descriptor says ",
                                                   desc.size));
  }
  TransferSlot slot(this);
  std::string what = absl::StrCat("push blob ", desc.digest, " to ", repo.Name());
  std::vector<std::string> scopes = {PushScope(repo.repository)};
  const int64_t chunk = options_.upload_chunk_size;

  // One full upload attempt on `host`: POST, PUT or PATCHes + PUT.
  auto upload = [&](const RegistryHost& host) -> absl::Status {
    std::string start = absl::StrCat(host.BaseUrl(), "/", repo.repository, "/blobs/uploads/");
    ACCEL_ASSIGN_OR_RETURN(HttpResponse resp, Send(
                                                  host, scopes,
                                                  [&] {
                                                    HttpRequest r;
                                                    r.method = "POST";
                                                    r.url = start;
                                                    return r;
                                                  },
                                                  SendOptions{}));
    if (resp.status != 202) return Annotate(HttpError(resp), "start upload");
    std::string location = resp.Header("location");
    if (location.empty()) return absl::UnavailableError("start upload: no Location in the answer");
    location = ResolveLocation(host, location);

    ACCEL_ASSIGN_OR_RETURN(DigestVerifier verifier, DigestVerifier::Create(desc.digest));
    // Sends bytes [from, to) of the source as the body of `method` to `url`.
    auto send_part = [&](const std::string& method, const std::string& url, int64_t from,
                         int64_t to, bool content_range) -> absl::StatusOr<HttpResponse> {
      int64_t pos = from;
      SendOptions so;
      so.retry = false;
      so.authorize = SameOrigin(host, url);
      return Send(
          host, scopes,
          [&] {
            HttpRequest r;
            r.method = method;
            r.url = url;
            r.headers.emplace_back("Content-Type", "application/octet-stream");
            if (content_range && to > from) {
              r.headers.emplace_back("Content-Range", absl::StrCat(from, "-", to - 1));
            }
            r.body_size = to - from;
            pos = from;
            r.body_reader = [&](char* buf, size_t max) -> absl::StatusOr<size_t> {
              int64_t n = std::min<int64_t>(static_cast<int64_t>(max), to - pos);
              if (n <= 0) return size_t{0};
              ACCEL_ASSIGN_OR_RETURN(std::string data, source.ReadAt(pos, n));
              if (data.empty()) return absl::DataLossError("source ended early");
              std::memcpy(buf, data.data(), data.size());
              verifier.Update(data);
              pos += static_cast<int64_t>(data.size());
              if (progress) progress(pos);
              if (pos == desc.size) ACCEL_RETURN_IF_ERROR(verifier.Verify());
              return data.size();
            };
            return r;
          },
          so);
    };

    if (chunk <= 0 || desc.size <= chunk) {
      ACCEL_ASSIGN_OR_RETURN(
          HttpResponse put,
          send_part("PUT", WithQuery(location, "digest", desc.digest), 0, desc.size, false));
      if (put.status != 201) return Annotate(HttpError(put), "upload");
      return absl::OkStatus();
    }
    for (int64_t off = 0; off < desc.size; off += chunk) {
      int64_t end = std::min(desc.size, off + chunk);
      ACCEL_ASSIGN_OR_RETURN(HttpResponse patch, send_part("PATCH", location, off, end, true));
      if (patch.status != 202) return Annotate(HttpError(patch), "upload chunk");
      std::string next = patch.Header("location");
      if (!next.empty()) location = ResolveLocation(host, next);
    }
    ACCEL_ASSIGN_OR_RETURN(
        HttpResponse put,
        send_part("PUT", WithQuery(location, "digest", desc.digest), desc.size, desc.size, false));
    if (put.status != 201) return Annotate(HttpError(put), "finish upload");
    return absl::OkStatus();
  };

  return ForEachHost(repo.domain, kCapPush, what,
                     [&](const RegistryHost& host, HostCall& call) -> absl::Status {
                       call.stop = true;  // pushes go to the first push host only
                       return RetryOperation(
                           options_.retry, options_.sleep,
                           [](const absl::Status& s) {
                             return s.code() != absl::StatusCode::kDataLoss &&
                                    (IsRetryableTransportError(s) ||
                                     s.code() == absl::StatusCode::kResourceExhausted);
                           },
                           [&] { return upload(host); });
                     });
}

}  // namespace accel::registry

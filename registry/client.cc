#include "registry/client.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "registry/client_internal.h"
#include "registry/http_error.h"

namespace accel::registry {

std::string PullScope(absl::string_view repo) { return absl::StrCat("repository:", repo, ":pull"); }
std::string PushScope(absl::string_view repo) {
  return absl::StrCat("repository:", repo, ":pull,push");
}

Client::SendOptions Client::WithFallback(const HostCall& call) {
  SendOptions so;
  so.has_fallback = call.has_fallback;
  return so;
}

absl::StatusOr<std::unique_ptr<Client>> Client::Create(ClientOptions options) {
  if (options.max_concurrent_transfers < 1) {
    return absl::InvalidArgumentError("max_concurrent_transfers must be at least 1");
  }
  if (options.retry.max_attempts < 1) options.retry.max_attempts = 1;
  ACCEL_ASSIGN_OR_RETURN(std::unique_ptr<HttpTransport> transport,
                         HttpTransport::Create(options.transport));
  return std::unique_ptr<Client>(new Client(std::move(options), std::move(transport)));
}

Client::Client(ClientOptions options, std::unique_ptr<HttpTransport> transport)
    : options_(std::move(options)),
      transport_(std::move(transport)),
      auth_(options_.credentials,
            [this](const RegistryHost& host, const HttpRequest& req) {
              // The token server is reached with the registry host's TLS
              // settings and the client's retries.
              RetryOptions retry;
              retry.origin = host.Origin();
              return RetryRequest(options_.retry, options_.sleep, retry,
                                  [&] { return transport_->Do(req, TlsFor(host)); });
            }),
      free_slots_(options_.max_concurrent_transfers) {}

Client::~Client() = default;

TlsOptions Client::TlsFor(const RegistryHost& host) const {
  TlsOptions t;
  t.skip_verify = host.skip_verify || options_.hosts.insecure;
  t.ca_files = host.ca_files;
  if (!host.client_certs.empty()) {
    t.client_cert = host.client_certs[0].first;
    t.client_key = host.client_certs[0].second;
  }
  return t;
}

absl::StatusOr<std::vector<RegistryHost>> Client::HostsFor(absl::string_view domain) {
  std::string key = NormalizeRegistryHost(domain);
  {
    absl::MutexLock lock(&mu_);
    auto it = hosts_.find(key);
    if (it != hosts_.end()) return it->second;
  }
  ACCEL_ASSIGN_OR_RETURN(std::vector<RegistryHost> hosts, ConfigureHosts(key, options_.hosts));
  absl::MutexLock lock(&mu_);
  hosts_[key] = hosts;
  return hosts;
}

absl::Status Client::ForEachHost(
    absl::string_view domain, uint32_t capability, absl::string_view what,
    const std::function<absl::Status(const RegistryHost&, HostCall& call)>& fn) {
  ACCEL_ASSIGN_OR_RETURN(std::vector<RegistryHost> all, HostsFor(domain));
  std::vector<RegistryHost> hosts, down;
  absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    for (RegistryHost& h : all) {
      if ((h.capabilities & capability) == 0) continue;
      auto it = down_until_.find(h.Origin());
      (it != down_until_.end() && it->second > now ? down : hosts).push_back(std::move(h));
    }
  }
  hosts.insert(hosts.end(), down.begin(), down.end());
  std::vector<std::string> errors;
  absl::Status last;
  bool any = false;
  for (size_t i = 0; i < hosts.size(); ++i) {
    const RegistryHost& h = hosts[i];
    any = true;
    HostCall call;
    call.has_fallback = i + 1 < hosts.size();
    absl::Status s = fn(h, call);
    if (IsConnectFailure(s)) {
      absl::MutexLock lock(&mu_);
      down_until_[h.Origin()] = absl::Now() + absl::Seconds(30);
    } else if (s.ok()) {
      absl::MutexLock lock(&mu_);
      down_until_.erase(h.Origin());
    }
    bool stop = call.stop;
    if (s.ok()) return s;
    ACCEL_LOG(kDebug, "msg=\"registry host failed\"", LogField("op", what),
              LogField("host", h.Origin()), LogField("error", s.message()));
    errors.push_back(absl::StrCat(h.Origin(), ": ", s.message()));
    last = s;
    if (stop || s.code() == absl::StatusCode::kDataLoss ||
        s.code() == absl::StatusCode::kCancelled) {
      break;
    }
  }
  if (!any) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": no host for ", domain, " has the capability needed"));
  }
  return absl::Status(last.code(), absl::StrCat(what, ": ", absl::StrJoin(errors, "; ")));
}

absl::StatusOr<HttpResponse> Client::Send(const RegistryHost& host,
                                          const std::vector<std::string>& scopes,
                                          const std::function<HttpRequest()>& build,
                                          const SendOptions& so) {
  RetryOptions retry;
  retry.retry = so.retry;
  retry.connect_failure_is_final = so.has_fallback;
  retry.progress = so.progress;
  retry.origin = host.Origin();
  // Progress at the last re-authentication: a second 401 without progress
  // in between is final.
  std::optional<int64_t> reauthenticated_at;
  for (;;) {
    std::string auth;
    if (so.authorize) {
      ACCEL_ASSIGN_OR_RETURN(auth, auth_.Authorization(host, scopes));
    }
    ACCEL_ASSIGN_OR_RETURN(HttpResponse resp,
                           RetryRequest(options_.retry, options_.sleep, retry, [&] {
                             HttpRequest req = build();
                             for (const auto& [k, v] : host.headers) req.headers.emplace_back(k, v);
                             if (!auth.empty()) req.headers.emplace_back("Authorization", auth);
                             return transport_->Do(req, TlsFor(host));
                           }));
    if (resp.status != 401) return resp;
    const int64_t progress = so.progress ? so.progress() : 0;
    if (reauthenticated_at != progress) {
      reauthenticated_at = progress;
      ACCEL_RETURN_IF_ERROR(auth_.Authenticate(host, scopes, resp));
      continue;
    }
    // Refused again with fresh credentials or a fresh token.
    const bool have = auth_.CredentialsFor(host.host).has_value();
    return absl::UnauthenticatedError(
        have ? absl::StrCat(host.host, " refused the credentials configured for it")
             : absl::StrCat(host.host,
                            " refused anonymous access; configure credentials "
                            "(docker config.json, or [registry.auths.\"",
                            host.host, "\"] in --config)"));
  }
}

void Client::SetCredentials(absl::string_view host, Credentials credentials) {
  auth_.SetCredentials(host, std::move(credentials));
}

absl::StatusOr<Client::FetchedManifest> Client::FetchManifest(const Reference& ref) {
  bool by_digest = !ref.digest.empty();
  FetchedManifest out;
  std::string what = absl::StrCat("fetch manifest ", ref.String());
  absl::Status s = ForEachHost(
      ref.domain, by_digest ? kCapPull : kCapResolve, what,
      [&](const RegistryHost& host, HostCall& call) -> absl::Status {
        std::string url =
            absl::StrCat(host.BaseUrl(), "/", ref.repository, "/manifests/", ref.Object());
        ACCEL_ASSIGN_OR_RETURN(HttpResponse resp, Send(
                                                      host, {PullScope(ref.repository)},
                                                      [&] {
                                                        HttpRequest r;
                                                        r.url = url;
                                                        r.headers.emplace_back(
                                                            "Accept", media::kManifestAccept);
                                                        r.max_body_bytes = kMaxManifestSize;
                                                        return r;
                                                      },
                                                      WithFallback(call)));
        if (resp.status != 200) return HttpError(resp);
        std::string digest;
        if (by_digest) {
          ACCEL_ASSIGN_OR_RETURN(DigestVerifier v, DigestVerifier::Create(ref.digest));
          v.Update(resp.body);
          ACCEL_RETURN_IF_ERROR(Annotate(v.Verify(), "manifest"));
          digest = ref.digest;
        } else {
          digest = Sha256::Of(resp.body);
          std::string claimed = resp.Header("docker-content-digest");
          if (absl::StartsWith(claimed, "sha256:") && claimed != digest) {
            return absl::DataLossError(absl::StrCat("manifest digest mismatch: registry says ",
                                                    Sanitize(claimed, 80), ", content is ",
                                                    digest));
          }
        }
        ACCEL_ASSIGN_OR_RETURN(std::string mt,
                               DetectManifestMediaType(resp.body, resp.Header("content-type")));
        out.descriptor.media_type = mt;
        out.descriptor.digest = digest;
        out.descriptor.size = static_cast<int64_t>(resp.body.size());
        out.bytes = std::move(resp.body);
        return absl::OkStatus();
      });
  if (!s.ok()) return s;
  return out;
}

absl::StatusOr<Client::ResolvedImage> Client::ResolveImage(const Reference& ref,
                                                           const Platform& platform) {
  ResolvedImage out;
  ACCEL_ASSIGN_OR_RETURN(FetchedManifest top, FetchManifest(ref));
  if (IsIndexMediaType(top.descriptor.media_type)) {
    ACCEL_ASSIGN_OR_RETURN(Index idx, ParseIndex(top.bytes, top.descriptor.media_type));
    absl::StatusOr<Descriptor> d = SelectPlatform(idx, platform);
    if (!d.ok()) return Annotate(d.status(), ref.String());
    if (!IsManifestMediaType(d->media_type)) {
      return absl::UnimplementedError(
          absl::StrCat(ref.String(), ": nested index for ", platform.String(), " not supported"));
    }
    ACCEL_ASSIGN_OR_RETURN(out.manifest, FetchManifest(ref.WithDigest(d->digest)));
    if (out.manifest.descriptor.size != d->size) {
      return absl::DataLossError(absl::StrCat(ref.String(), ": manifest ", d->digest, " has ",
                                              out.manifest.descriptor.size,
                                              " bytes, the index says ", d->size));
    }
    out.index = std::move(top);
  } else {
    out.manifest = std::move(top);
  }
  if (!IsManifestMediaType(out.manifest.descriptor.media_type)) {
    return absl::InvalidArgumentError(absl::StrCat(
        ref.String(), ": expected an image manifest, got ", out.manifest.descriptor.media_type));
  }
  absl::StatusOr<Manifest> m =
      ParseManifest(out.manifest.bytes, out.manifest.descriptor.media_type);
  if (!m.ok()) return Annotate(m.status(), ref.String());
  out.parsed = *std::move(m);
  return out;
}

absl::StatusOr<std::optional<int64_t>> Client::StatBlob(const Reference& repo,
                                                        absl::string_view digest,
                                                        Capability capability) {
  ACCEL_RETURN_IF_ERROR(ValidateDigest(digest));
  std::optional<int64_t> out;
  std::string what = absl::StrCat("check blob ", digest, " in ", repo.Name());
  std::vector<std::string> scopes = {capability == kCapPush ? PushScope(repo.repository)
                                                            : PullScope(repo.repository)};
  ACCEL_RETURN_IF_ERROR(ForEachHost(
      repo.domain, capability, what, [&](const RegistryHost& host, HostCall& call) -> absl::Status {
        std::string url = absl::StrCat(host.BaseUrl(), "/", repo.repository, "/blobs/", digest);
        ACCEL_ASSIGN_OR_RETURN(HttpResponse resp, Send(
                                                      host, scopes,
                                                      [&] {
                                                        HttpRequest r;
                                                        r.method = "HEAD";
                                                        r.url = url;
                                                        return r;
                                                      },
                                                      WithFallback(call)));
        if (resp.status == 404) {
          call.stop = capability == kCapPush;  // the push host is the one that matters
          out.reset();
          return capability == kCapPush ? absl::OkStatus() : HttpError(resp);
        }
        if (resp.status != 200) return HttpError(resp);
        int64_t size = -1;
        if (!absl::SimpleAtoi(resp.Header("content-length"), &size)) size = -1;
        out = size;
        return absl::OkStatus();
      }));
  return out;
}

absl::Status Client::PushManifest(const Reference& ref, absl::string_view media_type,
                                  absl::string_view bytes) {
  if (static_cast<int64_t>(bytes.size()) > kMaxManifestSize) {
    return absl::InvalidArgumentError("manifest too large to push");
  }
  std::string what = absl::StrCat("push manifest ", ref.String());
  std::string body(bytes);
  std::string mt(media_type);
  return ForEachHost(
      ref.domain, kCapPush, what, [&](const RegistryHost& host, HostCall& call) -> absl::Status {
        call.stop = true;
        std::string url =
            absl::StrCat(host.BaseUrl(), "/", ref.repository, "/manifests/", ref.Object());
        ACCEL_ASSIGN_OR_RETURN(HttpResponse resp, Send(
                                                      host, {PushScope(ref.repository)},
                                                      [&] {
                                                        HttpRequest r;
                                                        r.method = "PUT";
                                                        r.url = url;
                                                        r.body = body;
                                                        r.headers.emplace_back("Content-Type", mt);
                                                        return r;
                                                      },
                                                      WithFallback(call)));
        if (resp.status != 201 && resp.status != 200) return HttpError(resp);
        return absl::OkStatus();
      });
}

}  // namespace accel::registry

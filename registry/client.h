#pragma once

// Client speaks the OCI distribution API to a registry and its mirrors:
// resolve references, fetch manifests and blobs (verified), read byte
// ranges, check, mount and upload blobs, push manifests.
//
// Hosts: for each registry domain, the hosts from the hosts directory (see
// hosts.h) are tried in order, each with the capability the operation
// needs (resolve for tags, pull for digests, push for uploads), the
// upstream last. A host that fails (connection error after retries, 5xx,
// 404, auth failure) passes the operation to the next one; the error names
// every host tried. A digest mismatch is final: nothing is retried or
// returned as good.
//
// Per host, connection errors, stalls, 408/429/5xx are retried with
// exponential backoff honouring Retry-After (registry/retry.h, the one retry
// loop, token requests included). Blob downloads resume from the byte
// reached (Range), on the same host or the next one. Auth
// (registry/authenticator.h): anonymous, basic, or bearer tokens obtained
// from the WWW-Authenticate challenge, cached until expiry, refreshed on
// 401. Credentials and tokens never appear in errors or logs.
//
// Files: client.cc (hosts and failover, Send, manifests), client_blobs.cc
// (downloads, range reads, mounts, uploads).
//
// Thread-safe. Blob transfers (downloads, range reads, uploads) are limited
// to options.max_concurrent_transfers at a time across threads.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "registry/auth.h"
#include "registry/authenticator.h"
#include "registry/blob_reader.h"
#include "registry/hosts.h"
#include "registry/http.h"
#include "registry/manifest.h"
#include "registry/reference.h"
#include "registry/retry.h"

namespace accel::registry {

struct ClientOptions {
  HostsOptions hosts;
  CredentialStore credentials;
  RetryPolicy retry;
  TransportOptions transport;
  int max_concurrent_transfers = 4;
  // Blobs larger than this are uploaded in PATCH chunks of this size;
  // smaller ones with one PUT. 0 = always one PUT.
  int64_t upload_chunk_size = 64 << 20;
  // How the client waits between retries (tests pass a fake).
  Sleeper sleep;
};

// Called with the number of bytes transferred so far.
using ProgressFn = std::function<void(int64_t done)>;

class Client {
 public:
  static absl::StatusOr<std::unique_ptr<Client>> Create(ClientOptions options);
  ~Client();

  struct FetchedManifest {
    Descriptor descriptor;  // media type as detected, digest of `bytes`, size
    std::string bytes;      // exactly as the registry sent them
  };

  // Fetches the manifest or index `ref` names (its digest if set, else its
  // tag). The bytes are verified against the reference's digest, or against
  // the registry's Docker-Content-Digest when fetched by tag.
  absl::StatusOr<FetchedManifest> FetchManifest(const Reference& ref);

  struct ResolvedImage {
    std::optional<FetchedManifest> index;  // set when `ref` named an index
    FetchedManifest manifest;              // the platform's image manifest
    Manifest parsed;
  };
  // FetchManifest, then, for an index, the entry for `platform`.
  absl::StatusOr<ResolvedImage> ResolveImage(const Reference& ref, const Platform& platform);

  // Streams blob `desc` of repository `repo` to `sink`, verifying size and
  // digest. The sink sees every byte once, in order, even across resumed
  // requests; bytes are trustworthy only if FetchBlob returns OK (DataLoss
  // on a mismatch). A sink error aborts the download and is returned.
  absl::Status FetchBlob(const Reference& repo, const Descriptor& desc,
                         const std::function<absl::Status(absl::string_view)>& sink,
                         const ProgressFn& progress = nullptr);

  // FetchBlob into memory; refuses blobs larger than `max_size`.
  absl::StatusOr<std::string> FetchBlobBytes(const Reference& repo, const Descriptor& desc,
                                             int64_t max_size = 16 << 20);

  // Bytes [offset, offset + length) of blob `desc` (fewer only at the end of
  // the blob). Not digest-verified: the caller checks what it reads (eStargz
  // verifies chunk digests). OutOfRange if offset is past the end.
  absl::StatusOr<std::string> ReadBlobRange(const Reference& repo, const Descriptor& desc,
                                            int64_t offset, int64_t length);

  // A BlobReader over ReadBlobRange. The client must outlive it.
  std::unique_ptr<BlobReader> OpenBlob(const Reference& repo, const Descriptor& desc);

  // The size of blob `digest` in `repo` on the first host with `capability`
  // that answers, or nullopt if the registry does not have it.
  absl::StatusOr<std::optional<int64_t>> StatBlob(const Reference& repo, absl::string_view digest,
                                                  Capability capability = kCapPush);

  // Asks the push host to mount `desc` from repository `from_repository` of
  // the same registry into `repo`. True if mounted, false if the registry
  // declined (the caller then uploads).
  absl::StatusOr<bool> MountBlob(const Reference& repo, const Descriptor& desc,
                                 absl::string_view from_repository);

  // Uploads blob `desc` from `source` (POST, then one PUT or PATCH chunks
  // and a final PUT). The bytes sent are verified against desc.digest.
  absl::Status PushBlob(const Reference& repo, const Descriptor& desc, BlobReader& source,
                        const ProgressFn& progress = nullptr);

  // PUTs `bytes` as manifest `ref.Object()` (tag or digest) with `media_type`.
  absl::Status PushManifest(const Reference& ref, absl::string_view media_type,
                            absl::string_view bytes);

  // Runtime credentials for registry `host` (normalised as
  // NormalizeRegistryHost; a mirror host is its own host here, as in the
  // static store): consulted before options.credentials for every later
  // request and token fetch; empty `credentials` remove the override. Held
  // in memory only (the CRI image proxy passes kubelet's pull secrets
  // here). Challenges recorded for the host are forgotten, so the next
  // request authenticates afresh with these credentials. Thread-safe.
  void SetCredentials(absl::string_view host, Credentials credentials);

  // The hosts used for `domain` (from the hosts directory), in order.
  absl::StatusOr<std::vector<RegistryHost>> HostsFor(absl::string_view domain);

 private:
  class TransferSlot;
  struct SendOptions;
  // Per host, during ForEachHost.
  struct HostCall {
    bool stop = false;          // set by the callback: do not try further hosts
    bool has_fallback = false;  // another host follows this one
  };
  static SendOptions WithFallback(const HostCall& call);
  explicit Client(ClientOptions options, std::unique_ptr<HttpTransport> transport);

  // Runs `fn` on each host of `domain` with `capability` until one succeeds;
  // stops early on DataLoss/Cancelled or when `fn` sets call.stop. Hosts
  // that refused connections recently are tried last.
  absl::Status ForEachHost(
      absl::string_view domain, uint32_t capability, absl::string_view what,
      const std::function<absl::Status(const RegistryHost&, HostCall& call)>& fn);

  // One request to one host: the Authorization header, the retry loop
  // (RetryRequest), and one re-authentication on a 401 (again after each
  // bit of progress).
  absl::StatusOr<HttpResponse> Send(const RegistryHost& host,
                                    const std::vector<std::string>& scopes,
                                    const std::function<HttpRequest()>& build,
                                    const SendOptions& send_options);

  TlsOptions TlsFor(const RegistryHost& host) const;

  absl::Status FetchBlobFromHost(const RegistryHost& host, const HostCall& call,
                                 const Reference& repo, const Descriptor& desc, int64_t first,
                                 int64_t last, int64_t& received,
                                 const std::function<absl::Status(absl::string_view)>& consume);

  // Constant after construction.
  const ClientOptions options_;
  const std::unique_ptr<HttpTransport> transport_;
  // Challenges, tokens and credentials (thread-safe on its own).
  Authenticator auth_;

  // Lock order: mu_ before slots_mu_ is never needed; neither is held
  // across a network call.
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::vector<RegistryHost>> hosts_ ABSL_GUARDED_BY(mu_);
  // Hosts (scheme://host) that refused a connection, until when to avoid them.
  absl::flat_hash_map<std::string, absl::Time> down_until_ ABSL_GUARDED_BY(mu_);

  absl::Mutex slots_mu_;
  int free_slots_ ABSL_GUARDED_BY(slots_mu_);
};

}  // namespace accel::registry

#pragma once

// MetaStore keeps snapshot records (id, name, kind, parent, timestamps,
// labels, usage) in SQLite in WAL mode, one transaction per operation. It
// never touches snapshot directories: Snapshotter creates and removes them
// around a transaction, and Cleanup() reconciles the two after a crash.
//
// Ids are allocated monotonically and never reused once committed, so a
// directory named after a removed snapshot can never be mistaken for a new
// one.
//
// Thread-safe: one connection; a Transaction holds the store's mutex for its
// lifetime, so transactions are serialized. A Transaction rolls back on
// destruction unless Commit() returned OK.

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "snapshotter/types.h"

namespace accel::snapshotter {

// A snapshot as stored: its record plus the ids of its ancestors.
struct SnapshotRecord {
  int64_t id = 0;
  Info info;
  Usage usage;                      // as recorded at commit (zero for active/view)
  std::vector<int64_t> parent_ids;  // nearest parent first
};

// A layer mounted by the daemon (see mount_table.h): where, for which
// committed snapshot, of which kind, and the FUSE connection's negotiated
// parameters (fuse/protocol.h ConnParams, serialized) that a successor
// process needs to serve the connection without INIT.
struct MountRecord {
  std::string mountpoint;
  std::string snapshot;  // the committed snapshot's name
  std::string kind;      // "store", "estargz"
  std::string layer;     // the layer's digest (diff id or blob digest)
  std::string conn;      // "" until the connection is initialised

  bool operator==(const MountRecord&) const = default;
};

class MetaStore;

class Transaction {
 public:
  Transaction(Transaction&& other) noexcept;
  Transaction& operator=(Transaction&&) = delete;
  Transaction(const Transaction&) = delete;
  ~Transaction();

  // Makes the transaction's changes durable and releases the store.
  // Afterwards the transaction must not be used; a failed commit has rolled
  // back.
  absl::Status Commit();
  bool writable() const { return writable_; }

 private:
  friend class MetaStore;
  Transaction(MetaStore* store, bool writable) : store_(store), writable_(writable) {}
  MetaStore* store_;
  bool writable_;
  bool done_ = false;
};

class MetaStore {
 public:
  // Opens or creates the database at `path` (WAL, synchronous=FULL, foreign
  // keys on) and migrates its schema.
  static absl::StatusOr<std::unique_ptr<MetaStore>> Open(const std::string& path);
  ~MetaStore();

  // Starts a transaction; a writable one takes SQLite's write lock at once.
  absl::StatusOr<Transaction> Begin(bool writable);

  // Inserts an active or view snapshot `key` above the committed `parent`
  // ("" for none). Returns InvalidArgument if `key` is empty, `kind` is not
  // active or view, or `parent` is not committed; NotFound if `parent` does
  // not exist; AlreadyExists if `key` is taken.
  // REQUIRES: a writable transaction.
  absl::StatusOr<SnapshotRecord> CreateSnapshot(Transaction& tx, Kind kind, absl::string_view key,
                                                absl::string_view parent, const Labels& labels,
                                                absl::Time now);

  // Returns the record of `key`. NotFound if it does not exist.
  absl::StatusOr<SnapshotRecord> Get(Transaction& tx, absl::string_view key);

  // Turns the active snapshot `key` into the committed snapshot `name` with
  // the same id, `labels` (replacing the active one's) and `usage`.
  // Returns AlreadyExists if `name` is taken, NotFound if `key` does not
  // exist, FailedPrecondition if `key` is not active.
  // REQUIRES: a writable transaction.
  absl::StatusOr<int64_t> CommitActive(Transaction& tx, absl::string_view key,
                                       absl::string_view name, const Labels& labels,
                                       const Usage& usage, absl::Time now);

  // Deletes `key`. Returns its id and kind. NotFound if missing,
  // FailedPrecondition if another snapshot has it as parent.
  // REQUIRES: a writable transaction.
  absl::StatusOr<std::pair<int64_t, Kind>> Remove(Transaction& tx, absl::string_view key);

  // Updates the labels of `info.name`: with no `paths`, or the path "labels",
  // replaces all labels with info.labels; "labels.KEY" sets KEY to
  // info.labels[KEY] (or deletes it when absent or empty). Any other path is
  // InvalidArgument. NotFound if the snapshot does not exist.
  // REQUIRES: a writable transaction.
  absl::StatusOr<Info> UpdateInfo(Transaction& tx, const Info& info,
                                  const std::vector<std::string>& paths, absl::Time now);

  // Calls `fn` for every snapshot (in id order); stops at the first error.
  absl::Status Walk(Transaction& tx, const std::function<absl::Status(const SnapshotRecord&)>& fn);

  // The name of one child of `key`, or "" if it has none (or does not exist).
  absl::StatusOr<std::string> FirstChild(Transaction& tx, absl::string_view key);

  // The mount table (one row per mountpoint, see MountRecord). PutMount
  // inserts or replaces. REQUIRES (Put/Delete): a writable transaction.
  absl::Status PutMount(Transaction& tx, const MountRecord& rec);
  absl::Status DeleteMount(Transaction& tx, absl::string_view mountpoint);
  absl::StatusOr<std::vector<MountRecord>> ListMounts(Transaction& tx);

  // Returns every id in use.
  absl::StatusOr<std::vector<int64_t>> Ids(Transaction& tx);

 private:
  friend class Transaction;
  explicit MetaStore(sqlite3* db) : db_(db) {}

  absl::Status Exec(const char* sql);
  absl::Status LoadLabels(int64_t id, Labels& labels);
  absl::Status LoadParents(SnapshotRecord& rec);
  absl::Status WriteLabels(int64_t id, const Labels& labels);
  absl::StatusOr<SnapshotRecord> GetLocked(absl::string_view key);

  // The connection is used only by the thread that holds mu_ (through a
  // Transaction).
  absl::Mutex mu_;
  sqlite3* db_;
};

}  // namespace accel::snapshotter

#include "snapshotter/metastore.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace accel::snapshotter {
namespace {

constexpr int kSchemaVersion = 1;

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS meta(
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots(
  id         INTEGER PRIMARY KEY AUTOINCREMENT,
  name       TEXT NOT NULL UNIQUE,
  parent_id  INTEGER REFERENCES snapshots(id),
  kind       INTEGER NOT NULL,
  created_ns INTEGER NOT NULL,
  updated_ns INTEGER NOT NULL,
  size       INTEGER NOT NULL DEFAULT 0,
  inodes     INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS snapshots_by_parent ON snapshots(parent_id);
CREATE TABLE IF NOT EXISTS labels(
  snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
  key         TEXT NOT NULL,
  value       TEXT NOT NULL,
  PRIMARY KEY(snapshot_id, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mounts(
  mountpoint TEXT PRIMARY KEY,
  snapshot   TEXT NOT NULL,
  kind       TEXT NOT NULL,
  layer      TEXT NOT NULL,
  conn       TEXT NOT NULL DEFAULT '') WITHOUT ROWID;
)sql";

// RAII prepared statement.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  absl::Status status() const {
    if (rc_ == SQLITE_OK) return absl::OkStatus();
    return absl::InternalError(absl::StrCat("sqlite prepare: ", sqlite3_errmsg(db_)));
  }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Stmt& Bind(int i, absl::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& BindNull(int i) {
    sqlite3_bind_null(stmt_, i);
    return *this;
  }
  // Returns true for a row, false when done.
  absl::StatusOr<bool> Step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    if ((rc & 0xff) == SQLITE_CONSTRAINT) {
      return absl::AlreadyExistsError(absl::StrCat("constraint: ", sqlite3_errmsg(db_)));
    }
    return absl::InternalError(absl::StrCat("sqlite: ", sqlite3_errmsg(db_)));
  }
  absl::Status Run() {
    ACCEL_ASSIGN_OR_RETURN(bool row, Step());
    (void)row;
    return absl::OkStatus();
  }
  // Makes the statement ready to run again with new bindings.
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }
  bool IsNull(int col) { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string Text(int col) {
    const unsigned char* p = sqlite3_column_text(stmt_, col);
    int n = sqlite3_column_bytes(stmt_, col);
    return p ? std::string(reinterpret_cast<const char*>(p), n) : std::string();
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

int64_t ToNs(absl::Time t) { return absl::ToUnixNanos(t); }
absl::Time FromNs(int64_t ns) { return absl::FromUnixNanos(ns); }

constexpr char kSelectSnapshot[] =
    "SELECT s.id, s.name, s.kind, s.created_ns, s.updated_ns, s.size, s.inodes, "
    "p.name FROM snapshots s LEFT JOIN snapshots p ON s.parent_id = p.id ";

void ReadRow(Stmt& st, SnapshotRecord& rec) {
  rec.id = st.Int(0);
  rec.info.name = st.Text(1);
  rec.info.kind = static_cast<Kind>(st.Int(2));
  rec.info.created = FromNs(st.Int(3));
  rec.info.updated = FromNs(st.Int(4));
  rec.usage.size = st.Int(5);
  rec.usage.inodes = st.Int(6);
  rec.info.parent = st.IsNull(7) ? std::string() : st.Text(7);
}

}  // namespace

const char* KindName(Kind kind) {
  switch (kind) {
    case Kind::kView:
      return "view";
    case Kind::kActive:
      return "active";
    case Kind::kCommitted:
      return "committed";
    default:
      return "unknown";
  }
}

Transaction::Transaction(Transaction&& other) noexcept
    : store_(std::exchange(other.store_, nullptr)),
      writable_(other.writable_),
      done_(other.done_) {}

// The store's mu_ passes from Begin() to the Transaction, which holds it
// until Commit() or its destruction: an object owning a lock is beyond what
// -Wthread-safety follows, so these three are not analysed.
Transaction::~Transaction() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  if (store_ == nullptr) return;
  if (!done_) sqlite3_exec(store_->db_, "ROLLBACK", nullptr, nullptr, nullptr);
  store_->mu_.Unlock();
}

absl::Status Transaction::Commit() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  if (store_ == nullptr || done_) return absl::FailedPreconditionError("transaction finished");
  done_ = true;
  MetaStore* store = std::exchange(store_, nullptr);
  char* err = nullptr;
  absl::Status status;
  if (sqlite3_exec(store->db_, "COMMIT", nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown";
    sqlite3_free(err);
    sqlite3_exec(store->db_, "ROLLBACK", nullptr, nullptr, nullptr);
    status = absl::InternalError(absl::StrCat("commit metadata: ", msg));
  }
  // The store is free for the next transaction as soon as this one is over.
  store->mu_.Unlock();
  return status;
}

absl::StatusOr<std::unique_ptr<MetaStore>> MetaStore::Open(const std::string& path) {
  sqlite3* db = nullptr;
  int rc =
      sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::UnavailableError(absl::StrCat("open metadata database ", path, ": ", msg));
  }
  sqlite3_busy_timeout(db, 10000);
  std::unique_ptr<MetaStore> store(new MetaStore(db));
  ACCEL_RETURN_IF_ERROR(Annotate(store->Exec("PRAGMA journal_mode=WAL"), path));
  ACCEL_RETURN_IF_ERROR(store->Exec("PRAGMA synchronous=FULL"));
  ACCEL_RETURN_IF_ERROR(store->Exec("PRAGMA foreign_keys=ON"));
  ACCEL_RETURN_IF_ERROR(store->Exec("BEGIN IMMEDIATE"));
  absl::Status s = store->Exec(kSchema);
  if (s.ok()) {
    Stmt st(db, "SELECT value FROM meta WHERE key = 'schema_version'");
    ACCEL_RETURN_IF_ERROR(st.status());
    auto row = st.Step();
    if (!row.ok()) {
      s = row.status();
    } else if (*row && st.Text(0) != absl::StrCat(kSchemaVersion)) {
      s = absl::FailedPreconditionError(absl::StrCat("metadata database ", path,
                                                     " has schema version ", st.Text(0),
                                                     ", this build reads ", kSchemaVersion));
    } else if (!*row) {
      Stmt ins(db, "INSERT INTO meta(key, value) VALUES('schema_version', ?1)");
      s = ins.Bind(1, absl::StrCat(kSchemaVersion)).Run();
    }
  }
  if (!s.ok()) {
    store->Exec("ROLLBACK").IgnoreError();
    return Annotate(s, "initialize metadata database ", path);
  }
  ACCEL_RETURN_IF_ERROR(store->Exec("COMMIT"));
  return store;
}

MetaStore::~MetaStore() { sqlite3_close(db_); }

absl::Status MetaStore::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db_);
    sqlite3_free(err);
    return absl::InternalError(absl::StrCat("sqlite: ", msg));
  }
  return absl::OkStatus();
}

absl::StatusOr<Transaction> MetaStore::Begin(bool writable) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  mu_.Lock();
  absl::Status s = Exec(writable ? "BEGIN IMMEDIATE" : "BEGIN");
  if (!s.ok()) {
    mu_.Unlock();
    return Annotate(s, "begin transaction");
  }
  return Transaction(this, writable);
}

absl::Status MetaStore::LoadLabels(int64_t id, Labels& labels) {
  Stmt st(db_, "SELECT key, value FROM labels WHERE snapshot_id = ?1");
  ACCEL_RETURN_IF_ERROR(st.status());
  st.Bind(1, id);
  while (true) {
    ACCEL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    labels[st.Text(0)] = st.Text(1);
  }
  return absl::OkStatus();
}

absl::Status MetaStore::LoadParents(SnapshotRecord& rec) {
  Stmt st(db_,
          "WITH RECURSIVE chain(id, parent_id, depth) AS ("
          "  SELECT id, parent_id, 0 FROM snapshots WHERE id = ?1"
          "  UNION ALL"
          "  SELECT s.id, s.parent_id, c.depth + 1 FROM snapshots s JOIN chain c"
          "  ON s.id = c.parent_id)"
          "SELECT id FROM chain WHERE depth > 0 ORDER BY depth");
  ACCEL_RETURN_IF_ERROR(st.status());
  st.Bind(1, rec.id);
  rec.parent_ids.clear();
  while (true) {
    ACCEL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    rec.parent_ids.push_back(st.Int(0));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> MetaStore::FirstChild(Transaction& tx, absl::string_view key) {
  (void)tx;
  Stmt st(db_,
          "SELECT c.name FROM snapshots c JOIN snapshots p ON c.parent_id = p.id "
          "WHERE p.name = ?1 LIMIT 1");
  ACCEL_RETURN_IF_ERROR(st.status());
  ACCEL_ASSIGN_OR_RETURN(bool row, st.Bind(1, key).Step());
  return row ? st.Text(0) : std::string();
}

absl::Status MetaStore::PutMount(Transaction& tx, const MountRecord& rec) {
  if (!tx.writable()) return absl::InternalError("PutMount needs a writable transaction");
  Stmt st(db_,
          "INSERT OR REPLACE INTO mounts(mountpoint, snapshot, kind, layer, conn) "
          "VALUES(?1, ?2, ?3, ?4, ?5)");
  ACCEL_RETURN_IF_ERROR(st.status());
  return st.Bind(1, rec.mountpoint)
      .Bind(2, rec.snapshot)
      .Bind(3, rec.kind)
      .Bind(4, rec.layer)
      .Bind(5, rec.conn)
      .Run();
}

absl::Status MetaStore::DeleteMount(Transaction& tx, absl::string_view mountpoint) {
  if (!tx.writable()) return absl::InternalError("DeleteMount needs a writable transaction");
  Stmt st(db_, "DELETE FROM mounts WHERE mountpoint = ?1");
  ACCEL_RETURN_IF_ERROR(st.status());
  return st.Bind(1, mountpoint).Run();
}

absl::StatusOr<std::vector<MountRecord>> MetaStore::ListMounts(Transaction& tx) {
  (void)tx;
  Stmt st(db_, "SELECT mountpoint, snapshot, kind, layer, conn FROM mounts ORDER BY mountpoint");
  ACCEL_RETURN_IF_ERROR(st.status());
  std::vector<MountRecord> out;
  while (true) {
    ACCEL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(MountRecord{st.Text(0), st.Text(1), st.Text(2), st.Text(3), st.Text(4)});
  }
  return out;
}

absl::Status MetaStore::WriteLabels(int64_t id, const Labels& labels) {
  Stmt del(db_, "DELETE FROM labels WHERE snapshot_id = ?1");
  ACCEL_RETURN_IF_ERROR(del.status());
  ACCEL_RETURN_IF_ERROR(del.Bind(1, id).Run());
  Stmt ins(db_, "INSERT INTO labels(snapshot_id, key, value) VALUES(?1, ?2, ?3)");
  ACCEL_RETURN_IF_ERROR(ins.status());
  for (const auto& [k, v] : labels) {
    ins.Reset();
    ACCEL_RETURN_IF_ERROR(ins.Bind(1, id).Bind(2, k).Bind(3, v).Run());
  }
  return absl::OkStatus();
}

absl::StatusOr<SnapshotRecord> MetaStore::GetLocked(absl::string_view key) {
  Stmt st(db_, absl::StrCat(kSelectSnapshot, "WHERE s.name = ?1").c_str());
  ACCEL_RETURN_IF_ERROR(st.status());
  st.Bind(1, key);
  ACCEL_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) {
    return absl::NotFoundError(absl::StrCat("snapshot ", key, " does not exist"));
  }
  SnapshotRecord rec;
  ReadRow(st, rec);
  ACCEL_RETURN_IF_ERROR(LoadLabels(rec.id, rec.info.labels));
  ACCEL_RETURN_IF_ERROR(LoadParents(rec));
  return rec;
}

absl::StatusOr<SnapshotRecord> MetaStore::Get(Transaction&, absl::string_view key) {
  return GetLocked(key);
}

absl::StatusOr<SnapshotRecord> MetaStore::CreateSnapshot(Transaction& tx, Kind kind,
                                                         absl::string_view key,
                                                         absl::string_view parent,
                                                         const Labels& labels, absl::Time now) {
  if (!tx.writable()) return absl::InternalError("CreateSnapshot needs a writable transaction");
  if (kind != Kind::kActive && kind != Kind::kView) {
    return absl::InvalidArgumentError(
        absl::StrCat("snapshot type ", KindName(kind),
                     " invalid; only snapshots of type active or view can be created"));
  }
  if (key.empty()) return absl::InvalidArgumentError("snapshot key must not be empty");
  int64_t parent_id = 0;
  if (!parent.empty()) {
    auto prec = GetLocked(parent);
    if (!prec.ok()) {
      if (absl::IsNotFound(prec.status())) {
        return absl::NotFoundError(absl::StrCat("parent ", parent, " does not exist"));
      }
      return prec.status();
    }
    if (prec->info.kind != Kind::kCommitted) {
      return absl::InvalidArgumentError(
          absl::StrCat("parent ", parent, " is not a committed snapshot"));
    }
    parent_id = prec->id;
  }
  Stmt ins(db_,
           "INSERT INTO snapshots(name, parent_id, kind, created_ns, updated_ns) "
           "VALUES(?1, ?2, ?3, ?4, ?4)");
  ACCEL_RETURN_IF_ERROR(ins.status());
  ins.Bind(1, key);
  if (parent_id != 0) {
    ins.Bind(2, parent_id);
  } else {
    ins.BindNull(2);
  }
  ins.Bind(3, static_cast<int64_t>(kind)).Bind(4, ToNs(now));
  absl::Status s = ins.Run();
  if (absl::IsAlreadyExists(s)) {
    return absl::AlreadyExistsError(absl::StrCat("snapshot ", key, " already exists"));
  }
  ACCEL_RETURN_IF_ERROR(s);
  int64_t id = sqlite3_last_insert_rowid(db_);
  ACCEL_RETURN_IF_ERROR(WriteLabels(id, labels));
  return GetLocked(key);
}

absl::StatusOr<int64_t> MetaStore::CommitActive(Transaction& tx, absl::string_view key,
                                                absl::string_view name, const Labels& labels,
                                                const Usage& usage, absl::Time now) {
  if (!tx.writable()) return absl::InternalError("CommitActive needs a writable transaction");
  if (name.empty()) return absl::InvalidArgumentError("commit name must not be empty");
  {
    Stmt st(db_, "SELECT 1 FROM snapshots WHERE name = ?1");
    ACCEL_RETURN_IF_ERROR(st.status());
    ACCEL_ASSIGN_OR_RETURN(bool taken, st.Bind(1, name).Step());
    if (taken) {
      return absl::AlreadyExistsError(absl::StrCat("committed snapshot ", name, " already exists"));
    }
  }
  auto rec = GetLocked(key);
  if (!rec.ok()) {
    if (absl::IsNotFound(rec.status())) {
      return absl::NotFoundError(absl::StrCat("active snapshot ", key, " does not exist"));
    }
    return rec.status();
  }
  if (rec->info.kind != Kind::kActive) {
    return absl::FailedPreconditionError(absl::StrCat("snapshot ", key, " is not active"));
  }
  Stmt up(db_,
          "UPDATE snapshots SET name = ?2, kind = ?3, created_ns = ?4, updated_ns = ?4, "
          "size = ?5, inodes = ?6 WHERE id = ?1");
  ACCEL_RETURN_IF_ERROR(up.status());
  up.Bind(1, rec->id)
      .Bind(2, name)
      .Bind(3, static_cast<int64_t>(Kind::kCommitted))
      .Bind(4, ToNs(now))
      .Bind(5, usage.size)
      .Bind(6, usage.inodes);
  ACCEL_RETURN_IF_ERROR(up.Run());
  ACCEL_RETURN_IF_ERROR(WriteLabels(rec->id, labels));
  return rec->id;
}

absl::StatusOr<std::pair<int64_t, Kind>> MetaStore::Remove(Transaction& tx, absl::string_view key) {
  if (!tx.writable()) return absl::InternalError("Remove needs a writable transaction");
  Stmt st(db_, "SELECT id, kind FROM snapshots WHERE name = ?1");
  ACCEL_RETURN_IF_ERROR(st.status());
  ACCEL_ASSIGN_OR_RETURN(bool row, st.Bind(1, key).Step());
  if (!row) return absl::NotFoundError(absl::StrCat("snapshot ", key, " does not exist"));
  int64_t id = st.Int(0);
  Kind kind = static_cast<Kind>(st.Int(1));
  Stmt child(db_, "SELECT name FROM snapshots WHERE parent_id = ?1 LIMIT 1");
  ACCEL_RETURN_IF_ERROR(child.status());
  ACCEL_ASSIGN_OR_RETURN(bool has_child, child.Bind(1, id).Step());
  if (has_child) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot remove snapshot ", key, " with child (", child.Text(0), ")"));
  }
  Stmt del(db_, "DELETE FROM snapshots WHERE id = ?1");
  ACCEL_RETURN_IF_ERROR(del.status());
  ACCEL_RETURN_IF_ERROR(del.Bind(1, id).Run());
  return std::make_pair(id, kind);
}

absl::StatusOr<Info> MetaStore::UpdateInfo(Transaction& tx, const Info& info,
                                           const std::vector<std::string>& paths, absl::Time now) {
  if (!tx.writable()) return absl::InternalError("UpdateInfo needs a writable transaction");
  ACCEL_ASSIGN_OR_RETURN(SnapshotRecord rec, GetLocked(info.name));
  Labels labels = rec.info.labels;
  if (paths.empty()) {
    labels = info.labels;
  } else {
    for (const std::string& path : paths) {
      if (absl::StartsWith(path, "labels.")) {
        std::string key = path.substr(7);
        auto it = info.labels.find(key);
        if (it == info.labels.end() || it->second.empty()) {
          labels.erase(key);
        } else {
          labels[key] = it->second;
        }
      } else if (path == "labels") {
        labels = info.labels;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("cannot update \"", path, "\" field on snapshot ", info.name));
      }
    }
  }
  for (auto it = labels.begin(); it != labels.end();) {
    it = it->second.empty() ? labels.erase(it) : std::next(it);
  }
  Stmt up(db_, "UPDATE snapshots SET updated_ns = ?2 WHERE id = ?1");
  ACCEL_RETURN_IF_ERROR(up.status());
  ACCEL_RETURN_IF_ERROR(up.Bind(1, rec.id).Bind(2, ToNs(now)).Run());
  ACCEL_RETURN_IF_ERROR(WriteLabels(rec.id, labels));
  rec.info.labels = std::move(labels);
  rec.info.updated = now;
  return rec.info;
}

absl::Status MetaStore::Walk(Transaction&,
                             const std::function<absl::Status(const SnapshotRecord&)>& fn) {
  // Read everything first: `fn` may be slow (it streams to a client).
  std::vector<SnapshotRecord> recs;
  {
    Stmt st(db_, absl::StrCat(kSelectSnapshot, "ORDER BY s.id").c_str());
    ACCEL_RETURN_IF_ERROR(st.status());
    while (true) {
      ACCEL_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      SnapshotRecord rec;
      ReadRow(st, rec);
      recs.push_back(std::move(rec));
    }
  }
  {
    Stmt st(db_, "SELECT snapshot_id, key, value FROM labels ORDER BY snapshot_id");
    ACCEL_RETURN_IF_ERROR(st.status());
    size_t i = 0;
    while (true) {
      ACCEL_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      int64_t id = st.Int(0);
      while (i < recs.size() && recs[i].id < id) ++i;
      if (i < recs.size() && recs[i].id == id) recs[i].info.labels[st.Text(1)] = st.Text(2);
    }
  }
  for (const SnapshotRecord& rec : recs) ACCEL_RETURN_IF_ERROR(fn(rec));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> MetaStore::Ids(Transaction&) {
  Stmt st(db_, "SELECT id FROM snapshots ORDER BY id");
  ACCEL_RETURN_IF_ERROR(st.status());
  std::vector<int64_t> ids;
  while (true) {
    ACCEL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    ids.push_back(st.Int(0));
  }
  return ids;
}

}  // namespace accel::snapshotter

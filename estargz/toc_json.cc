#include "estargz/toc_json.h"

#include <limits>
#include <map>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace accel::estargz::internal {
namespace {

enum class Field {
  kUnknown,
  // strings
  kName,
  kType,
  kModtime,
  kLinkName,
  kUserName,
  kGroupName,
  kDigest,
  kChunkDigest,
  // integers
  kSize,
  kMode,
  kUid,
  kGid,
  kOffset,
  kDevMajor,
  kDevMinor,
  kChunkOffset,
  kChunkSize,
  kInnerOffset,
  // object
  kXattrs,
};

Field FieldOf(const std::string& key) {
  static const auto* const kFields = new std::map<std::string, Field, std::less<>>{
      {"name", Field::kName},
      {"type", Field::kType},
      {"modtime", Field::kModtime},
      {"linkName", Field::kLinkName},
      {"userName", Field::kUserName},
      {"groupName", Field::kGroupName},
      {"digest", Field::kDigest},
      {"chunkDigest", Field::kChunkDigest},
      {"size", Field::kSize},
      {"mode", Field::kMode},
      {"uid", Field::kUid},
      {"gid", Field::kGid},
      {"offset", Field::kOffset},
      {"devMajor", Field::kDevMajor},
      {"devMinor", Field::kDevMinor},
      {"chunkOffset", Field::kChunkOffset},
      {"chunkSize", Field::kChunkSize},
      {"innerOffset", Field::kInnerOffset},
      {"xattrs", Field::kXattrs},
  };
  auto it = kFields->find(key);
  return it == kFields->end() ? Field::kUnknown : it->second;
}

bool IsStringField(Field f) { return f >= Field::kName && f <= Field::kChunkDigest; }
bool IsIntField(Field f) { return f >= Field::kSize && f <= Field::kInnerOffset; }

std::string* StringSlot(RawEntry& e, Field f) {
  switch (f) {
    case Field::kName:
      return &e.name;
    case Field::kType:
      return &e.type;
    case Field::kModtime:
      return &e.modtime;
    case Field::kLinkName:
      return &e.link_name;
    case Field::kDigest:
      return &e.digest;
    case Field::kChunkDigest:
      return &e.chunk_digest;
    default:
      return nullptr;  // userName, groupName: not kept
  }
}

int64_t* IntSlot(RawEntry& e, Field f) {
  switch (f) {
    case Field::kSize:
      return &e.size;
    case Field::kMode:
      return &e.mode;
    case Field::kUid:
      return &e.uid;
    case Field::kGid:
      return &e.gid;
    case Field::kOffset:
      return &e.offset;
    case Field::kDevMajor:
      return &e.dev_major;
    case Field::kDevMinor:
      return &e.dev_minor;
    case Field::kChunkOffset:
      return &e.chunk_offset;
    case Field::kChunkSize:
      return &e.chunk_size;
    case Field::kInnerOffset:
      return &e.inner_offset;
    default:
      return nullptr;
  }
}

// What a SAX event carries.
enum class Kind { kNull, kBoolean, kFraction, kBinary, kInteger, kString, kObject, kArray };

// Streams the TOC JSON to `on_entry`, one entry at a time.
class TocSax final : public nlohmann::json_sax<nlohmann::json> {
 public:
  explicit TocSax(const std::function<absl::Status(RawEntry&, uint64_t)>& on_entry)
      : on_entry_(on_entry) {}

  const absl::Status& status() const { return status_; }
  bool complete() const { return done_; }
  bool saw_version() const { return saw_version_; }
  int64_t version() const { return version_; }

  bool null() override { return Value(Kind::kNull); }
  bool boolean(bool) override { return Value(Kind::kBoolean); }
  bool number_float(number_float_t, const string_t&) override { return Value(Kind::kFraction); }
  bool binary(binary_t&) override { return Value(Kind::kBinary); }
  bool number_integer(number_integer_t v) override {
    return Value(Kind::kInteger, nullptr, v, false);
  }
  bool number_unsigned(number_unsigned_t v) override {
    const bool overflow = v > static_cast<number_unsigned_t>(std::numeric_limits<int64_t>::max());
    return Value(Kind::kInteger, nullptr, overflow ? 0 : static_cast<int64_t>(v), overflow);
  }
  bool string(string_t& v) override { return Value(Kind::kString, &v); }
  bool start_object(std::size_t) override { return Value(Kind::kObject); }
  bool start_array(std::size_t) override { return Value(Kind::kArray); }
  bool end_object() override {
    if (skip_ > 0) return --skip_, true;
    const Ctx ctx = Top();
    stack_.pop_back();
    if (ctx == Ctx::kEntry) {
      absl::Status s = on_entry_(entry_, count_++);
      if (!s.ok()) return Fail(std::move(s));
    } else if (ctx == Ctx::kTop) {
      done_ = true;
    }
    return true;
  }
  bool end_array() override {
    if (skip_ > 0) return --skip_, true;
    stack_.pop_back();
    return true;
  }
  bool key(string_t& k) override {
    if (skip_ == 0) key_ = std::move(k);
    return true;
  }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& ex) override {
    if (status_.ok()) {
      status_ = absl::InvalidArgumentError(
          absl::StrCat("TOC is not valid JSON at byte ", position, ": ", ex.what()));
    }
    return false;
  }

 private:
  enum class Ctx { kRoot, kTop, kEntries, kEntry, kXattrs };

  Ctx Top() const { return stack_.empty() ? Ctx::kRoot : stack_.back(); }

  static const char* Expect(Field f) {
    if (IsStringField(f)) return "a string";
    if (IsIntField(f)) return "an integer";
    return "an object";
  }

  // Every value (scalar, or the start of an object or array) in the context
  // it appears in.
  bool Value(Kind kind, string_t* text = nullptr, int64_t number = 0, bool overflow = false) {
    const bool container = kind == Kind::kObject || kind == Kind::kArray;
    if (skip_ > 0) {
      if (container) ++skip_;
      return true;
    }
    switch (Top()) {
      case Ctx::kRoot:
        if (kind != Kind::kObject) return Fail("TOC is not a JSON object");
        stack_.push_back(Ctx::kTop);
        return true;
      case Ctx::kTop:
        return TopLevel(kind, number, overflow);
      case Ctx::kEntries:
        if (kind != Kind::kObject) return FailEntry("is not an object");
        entry_ = RawEntry();
        stack_.push_back(Ctx::kEntry);
        return true;
      case Ctx::kEntry:
        return EntryField(kind, text, number, overflow);
      case Ctx::kXattrs:
        if (kind == Kind::kString || kind == Kind::kNull) {
          entry_.xattrs.emplace_back(key_, kind == Kind::kString ? std::move(*text) : "");
          return true;
        }
        return FailEntry(absl::StrCat("xattr \"", key_, "\" is not a string"));
    }
    return true;
  }

  // A value of the document's top-level object.
  bool TopLevel(Kind kind, int64_t number, bool overflow) {
    if (key_ == "version") {
      if (kind == Kind::kNull) return Fail("TOC \"version\" is null");
      if (kind != Kind::kInteger) return Fail("TOC \"version\" is not an integer");
      if (overflow) return Fail("TOC \"version\" is out of range");
      if (saw_version_) return Fail("TOC has two \"version\" fields");
      saw_version_ = true;
      version_ = number;
      return true;
    }
    if (key_ == "entries") {
      if (kind == Kind::kNull) return true;  // "entries": null is an empty list
      if (kind != Kind::kArray) return Fail("TOC \"entries\" is not an array");
      if (saw_entries_) return Fail("TOC has two \"entries\" lists");
      saw_entries_ = true;
      stack_.push_back(Ctx::kEntries);
      return true;
    }
    if (kind == Kind::kObject || kind == Kind::kArray) skip_ = 1;  // unknown: ignored
    return true;
  }

  // A value of an entry's object.
  bool EntryField(Kind kind, string_t* text, int64_t number, bool overflow) {
    const Field f = FieldOf(key_);
    if (f == Field::kUnknown) {
      if (kind == Kind::kObject || kind == Kind::kArray) skip_ = 1;
      return true;
    }
    if (kind == Kind::kNull) return true;  // null leaves the field unset
    if (kind == Kind::kString && IsStringField(f)) {
      if (std::string* slot = StringSlot(entry_, f)) *slot = std::move(*text);
      return true;
    }
    if (kind == Kind::kInteger && IsIntField(f)) {
      if (overflow) return FailEntry(absl::StrCat("field \"", key_, "\" is out of range"));
      *IntSlot(entry_, f) = number;
      return true;
    }
    if (kind == Kind::kObject && f == Field::kXattrs) {
      entry_.xattrs.clear();
      stack_.push_back(Ctx::kXattrs);
      return true;
    }
    const char* is = kind == Kind::kBoolean    ? "a boolean"
                     : kind == Kind::kFraction ? "a fraction"
                     : kind == Kind::kBinary   ? "binary"
                                               : nullptr;
    if (is != nullptr) {
      return FailEntry(absl::StrCat("field \"", key_, "\" is ", is, ", not ", Expect(f)));
    }
    return FailEntry(absl::StrCat("field \"", key_, "\" is not ", Expect(f)));
  }

  bool Fail(absl::string_view message) { return Fail(absl::InvalidArgumentError(message)); }
  bool Fail(absl::Status s) {
    if (status_.ok()) status_ = std::move(s);
    return false;
  }
  bool FailEntry(absl::string_view message) {
    return Fail(absl::StrCat("TOC entry ", count_, " ", message));
  }

  const std::function<absl::Status(RawEntry&, uint64_t)>& on_entry_;
  std::vector<Ctx> stack_;
  int64_t skip_ = 0;  // depth inside a value that is ignored
  std::string key_;
  RawEntry entry_;
  uint64_t count_ = 0;
  bool saw_entries_ = false;
  bool saw_version_ = false;
  int64_t version_ = 0;
  bool done_ = false;
  absl::Status status_;
};

}  // namespace

absl::Status ParseTocJson(absl::string_view json,
                          const std::function<absl::Status(RawEntry&, uint64_t)>& on_entry) {
  TocSax sax(on_entry);
  bool ok = false;
  try {
    ok = nlohmann::json::sax_parse(json.begin(), json.end(), &sax);
  } catch (const std::exception& ex) {
    return absl::InvalidArgumentError(absl::StrCat("TOC is not valid JSON: ", ex.what()));
  }
  if (!sax.status().ok()) return sax.status();
  if (!ok || !sax.complete()) {
    return absl::InvalidArgumentError("TOC is not a complete JSON object");
  }
  if (!sax.saw_version()) return absl::InvalidArgumentError("TOC has no \"version\"");
  if (sax.version() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("TOC version ", sax.version(), " is not supported (want 1)"));
  }
  return absl::OkStatus();
}

}  // namespace accel::estargz::internal

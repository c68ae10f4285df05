#include "snapshotter/filters.h"

#include <cctype>
#include <optional>
#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace accel::snapshotter {
namespace {

enum class Op { kPresent, kEqual, kNotEqual, kMatch };

struct Selector {
  std::vector<std::string> fieldpath;
  Op op = Op::kPresent;
  std::string value;
  std::optional<std::regex> re;
};

// Returns the value of `fieldpath` on `info`, or nullopt when absent.
std::optional<std::string> Field(const Info& info, const std::vector<std::string>& path) {
  if (path.empty()) return std::nullopt;
  const std::string& f = path[0];
  if (path.size() == 1) {
    if (f == "name") return info.name;
    if (f == "parent") return info.parent;
    if (f == "kind") return std::string(KindName(info.kind));
    return std::nullopt;
  }
  if (f == "labels") {
    std::string key = absl::StrJoin(path.begin() + 1, path.end(), ".");
    auto it = info.labels.find(key);
    if (it == info.labels.end()) return std::nullopt;
    return it->second;
  }
  return std::nullopt;
}

bool MatchSelector(const Selector& s, const Info& info) {
  std::optional<std::string> v = Field(info, s.fieldpath);
  switch (s.op) {
    case Op::kPresent:
      return v.has_value() && !v->empty();
    case Op::kEqual:
      return v.has_value() && *v == s.value;
    case Op::kNotEqual:
      return !v.has_value() || *v != s.value;
    case Op::kMatch:
      return v.has_value() && std::regex_search(*v, *s.re);
  }
  return false;
}

class AndFilter : public Filter {
 public:
  explicit AndFilter(std::vector<Selector> sels) : sels_(std::move(sels)) {}
  bool Match(const Info& info) const override {
    for (const Selector& s : sels_) {
      if (!MatchSelector(s, info)) return false;
    }
    return true;
  }

 private:
  std::vector<Selector> sels_;
};

class AnyFilter : public Filter {
 public:
  explicit AnyFilter(std::vector<std::unique_ptr<Filter>> fs) : fs_(std::move(fs)) {}
  bool Match(const Info& info) const override {
    if (fs_.empty()) return true;
    for (const auto& f : fs_) {
      if (f->Match(info)) return true;
    }
    return false;
  }

 private:
  std::vector<std::unique_ptr<Filter>> fs_;
};

class Parser {
 public:
  explicit Parser(const std::string& in) : in_(in) {}

  absl::StatusOr<std::vector<Selector>> Parse() {
    std::vector<Selector> sels;
    SkipSpace();
    if (AtEnd()) return sels;  // "" matches everything
    while (true) {
      ACCEL_ASSIGN_OR_RETURN(Selector s, ParseSelector());
      sels.push_back(std::move(s));
      SkipSpace();
      if (AtEnd()) break;
      if (in_[pos_] != ',') return Error("expected , or end of filter");
      ++pos_;
      SkipSpace();
    }
    return sels;
  }

 private:
  bool AtEnd() const { return pos_ >= in_.size(); }
  void SkipSpace() {
    while (!AtEnd() && std::isspace(static_cast<unsigned char>(in_[pos_]))) ++pos_;
  }
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat("filter \"", in_, "\" at position ", pos_, ": ", what));
  }

  static bool IsQuote(char c) { return c == '"' || c == '/' || c == '|'; }

  absl::StatusOr<std::string> ParseQuoted() {
    char q = in_[pos_++];
    std::string out;
    while (!AtEnd()) {
      char c = in_[pos_++];
      if (c == q) return out;
      if (c == '\\') {
        if (AtEnd()) break;
        char e = in_[pos_++];
        switch (e) {
          case 'n':
            out.push_back('\n');
            break;
          case 't':
            out.push_back('\t');
            break;
          case 'r':
            out.push_back('\r');
            break;
          case '\\':
            out.push_back('\\');
            break;
          default:
            if (e == q) {
              out.push_back(e);
            } else {
              // Keep unknown escapes as written (regular expressions use them).
              out.push_back('\\');
              out.push_back(e);
            }
        }
        continue;
      }
      out.push_back(c);
    }
    return Error("unterminated quoted string");
  }

  absl::StatusOr<std::string> ParseField() {
    SkipSpace();
    if (AtEnd()) return Error("expected field");
    if (IsQuote(in_[pos_])) return ParseQuoted();
    size_t start = pos_;
    if (!std::isalpha(static_cast<unsigned char>(in_[pos_]))) {
      return Error("field must start with a letter or be quoted");
    }
    while (!AtEnd() && (std::isalnum(static_cast<unsigned char>(in_[pos_])) || in_[pos_] == '_' ||
                        in_[pos_] == '-')) {
      ++pos_;
    }
    return in_.substr(start, pos_ - start);
  }

  absl::StatusOr<Selector> ParseSelector() {
    Selector s;
    while (true) {
      ACCEL_ASSIGN_OR_RETURN(std::string f, ParseField());
      s.fieldpath.push_back(std::move(f));
      if (!AtEnd() && in_[pos_] == '.') {
        ++pos_;
        continue;
      }
      break;
    }
    SkipSpace();
    if (AtEnd() || in_[pos_] == ',') return s;
    if (pos_ + 1 >= in_.size() || in_[pos_ + 1] != '=') return Error("expected ==, != or ~=");
    switch (in_[pos_]) {
      case '=':
        s.op = Op::kEqual;
        break;
      case '!':
        s.op = Op::kNotEqual;
        break;
      case '~':
        s.op = Op::kMatch;
        break;
      default:
        return Error("expected ==, != or ~=");
    }
    pos_ += 2;
    SkipSpace();
    if (AtEnd()) return Error("expected value");
    if (IsQuote(in_[pos_])) {
      ACCEL_ASSIGN_OR_RETURN(s.value, ParseQuoted());
    } else {
      size_t start = pos_;
      while (!AtEnd() && in_[pos_] != ',' && !std::isspace(static_cast<unsigned char>(in_[pos_]))) {
        ++pos_;
      }
      s.value = in_.substr(start, pos_ - start);
    }
    if (s.op == Op::kMatch) {
      try {
        s.re.emplace(s.value, std::regex::ECMAScript);
      } catch (const std::regex_error& e) {
        return Error(absl::StrCat("bad regular expression \"", s.value, "\": ", e.what()));
      }
    }
    return s;
  }

  const std::string& in_;
  size_t pos_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Filter>> ParseFilters(const std::vector<std::string>& filters) {
  std::vector<std::unique_ptr<Filter>> any;
  for (const std::string& f : filters) {
    Parser p(f);
    ACCEL_ASSIGN_OR_RETURN(std::vector<Selector> sels, p.Parse());
    any.push_back(std::make_unique<AndFilter>(std::move(sels)));
  }
  return std::make_unique<AnyFilter>(std::move(any));
}

}  // namespace accel::snapshotter

#include "snapshotter/filters.h"

#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace accel::snapshotter {
namespace {

using ::accel::testing::StatusIs;

Info Make(const std::string& name, const std::string& parent, Kind kind, Labels labels) {
  Info i;
  i.name = name;
  i.parent = parent;
  i.kind = kind;
  i.labels = std::move(labels);
  return i;
}

bool Matches(const std::vector<std::string>& filters, const Info& info) {
  auto f = ParseFilters(filters);
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() && (*f)->Match(info);
}

TEST(FiltersTest, Table) {
  Info layer = Make("sha256:abc", "sha256:parent", Kind::kCommitted,
                    {{"containerd.io/snapshot.ref", "sha256:abc"}, {"team", "ml"}});
  struct Case {
    std::vector<std::string> filters;
    bool want;
  } cases[] = {
      {{}, true},
      {{""}, true},
      {{"name==sha256:abc"}, true},
      {{"name==sha256:abd"}, false},
      {{"name!=sha256:abd"}, true},
      {{"parent==sha256:parent"}, true},
      {{"kind==committed"}, true},
      {{"kind==active"}, false},
      {{"labels.team==ml"}, true},
      {{"labels.team"}, true},
      {{"labels.missing"}, false},
      {{"labels.missing!=x"}, true},
      {{"labels.\"containerd.io/snapshot.ref\"==sha256:abc"}, true},
      {{"labels.\"containerd.io/snapshot.ref\"==sha256:abc,parent==sha256:parent"}, true},
      {{"labels.\"containerd.io/snapshot.ref\"==sha256:abc,parent==other"}, false},
      {{"name==x", "labels.team==ml"}, true},  // OR of filters
      {{"name==x", "labels.team==cv"}, false},
      {{"name~=^sha256:a"}, true},
      {{"name~=/^sha256:b/"}, false},
      {{"labels.team==\"ml\""}, true},
      {{" kind == committed , labels.team == ml "}, true},
  };
  for (const Case& c : cases) {
    std::string shown;
    for (const auto& f : c.filters) shown += "[" + f + "]";
    EXPECT_EQ(Matches(c.filters, layer), c.want) << shown;
  }
}

TEST(FiltersTest, MalformedIsInvalidArgument) {
  for (const char* bad :
       {"name=", "name==", "labels.\"unterminated", "1name==x", "name==x,,", "name~=(", "name<x"}) {
    EXPECT_THAT(ParseFilters({bad}), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
}

}  // namespace
}  // namespace accel::snapshotter

// The FUSE protocol and the read-only operations as pure functions: request
// bytes in, reply bytes out, no mount. INIT against old and new kernels,
// the compat structure sizes, directory packing, the xattr size rule and
// read clamping.

#include "fuse/protocol.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fuse/layer_tree.h"
#include "fuse/ops.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace accel::fuse {
namespace {

using ::accel::testing::StatusIs;

// A request buffer: header then `arg`.
std::vector<char> RequestBytes(uint32_t opcode, uint64_t nodeid, const std::string& arg,
                               uint64_t unique = 7) {
  fuse_in_header h{};
  h.len = static_cast<uint32_t>(sizeof(h) + arg.size());
  h.opcode = opcode;
  h.unique = unique;
  h.nodeid = nodeid;
  std::vector<char> out(sizeof(h) + arg.size());
  std::memcpy(out.data(), &h, sizeof(h));
  std::memcpy(out.data() + sizeof(h), arg.data(), arg.size());
  return out;
}

template <typename T>
std::string Arg(const T& v, size_t size = sizeof(T)) {
  return std::string(reinterpret_cast<const char*>(&v), size);
}

fuse_out_header OutHeader(const char* data) {
  fuse_out_header h;
  std::memcpy(&h, data, sizeof(h));
  return h;
}

proto::Request Parse(const std::vector<char>& bytes) {
  absl::StatusOr<proto::Request> r = proto::ParseRequest(bytes.data(), bytes.size());
  EXPECT_OK(r.status());
  return *r;
}

absl::StatusOr<proto::InitResult> Init(uint32_t major, uint32_t minor, uint32_t flags,
                                       size_t arg_size = sizeof(fuse_init_in)) {
  fuse_init_in in{};
  in.major = major;
  in.minor = minor;
  in.max_readahead = 128 << 10;
  in.flags = flags;
  std::vector<char> bytes = RequestBytes(FUSE_INIT, 0, Arg(in, arg_size));
  return proto::NegotiateInit(Parse(bytes), proto::InitOptions{});
}

TEST(ProtocolTest, ParseRequestChecksLengths) {
  std::vector<char> ok = RequestBytes(FUSE_LOOKUP, 1, std::string("name\0", 5));
  ASSERT_OK_AND_ASSIGN(proto::Request r, proto::ParseRequest(ok.data(), ok.size()));
  EXPECT_EQ(r.opcode, uint32_t{FUSE_LOOKUP});
  EXPECT_EQ(r.nodeid, 1u);
  EXPECT_EQ(r.arg_len, 5u);
  ASSERT_OK_AND_ASSIGN(absl::string_view name, proto::NameArg(r));
  EXPECT_EQ(name, "name");
  EXPECT_THAT(proto::ParseRequest(ok.data(), 10), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(proto::ParseRequest(ok.data(), ok.size() - 1),
              StatusIs(absl::StatusCode::kInvalidArgument));
  std::vector<char> unterminated = RequestBytes(FUSE_LOOKUP, 1, "name");
  EXPECT_THAT(proto::NameArg(Parse(unterminated)), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ProtocolTest, InitWithACurrentKernelTakesWhatItWantsAndOffers) {
  const uint32_t offered = FUSE_ASYNC_READ | FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO |
                           FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES | FUSE_AUTO_INVAL_DATA |
                           FUSE_WRITEBACK_CACHE;
  ASSERT_OK_AND_ASSIGN(proto::InitResult r, Init(7, proto::OurMinor(), offered));
  ASSERT_TRUE(r.done);
  ASSERT_EQ(r.reply.size(), sizeof(fuse_out_header) + sizeof(fuse_init_out));
  fuse_init_out out;
  std::memcpy(&out, r.reply.data() + sizeof(fuse_out_header), sizeof(out));
  EXPECT_EQ(out.major, 7u);
  EXPECT_EQ(out.minor, proto::OurMinor());
  EXPECT_EQ(out.flags, uint32_t{FUSE_ASYNC_READ | FUSE_DO_READDIRPLUS | FUSE_PARALLEL_DIROPS |
                                FUSE_MAX_PAGES});
  EXPECT_EQ(out.max_pages, 256);
  EXPECT_EQ(out.max_readahead, 128u << 10) << "never more than offered";
  EXPECT_EQ(OutHeader(r.reply.data()).unique, 7u);
  EXPECT_EQ(r.conn.minor, proto::OurMinor());
  EXPECT_EQ(r.conn.flags, out.flags);
}

TEST(ProtocolTest, InitWithANewerKernelAnswersOurMinor) {
  ASSERT_OK_AND_ASSIGN(proto::InitResult r, Init(7, proto::OurMinor() + 7, FUSE_ASYNC_READ));
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.conn.minor, proto::OurMinor());
}

TEST(ProtocolTest, InitWithAnOldKernelUsesCompatSizes) {
  // 7.19: a 16-byte init_in (no flags2) and a 24-byte init_out.
  ASSERT_OK_AND_ASSIGN(proto::InitResult r, Init(7, 19, FUSE_ASYNC_READ | FUSE_MAX_PAGES,
                                                 offsetof(fuse_init_in, flags2)));
  ASSERT_TRUE(r.done);
  EXPECT_EQ(r.reply.size(), sizeof(fuse_out_header) + FUSE_COMPAT_22_INIT_OUT_SIZE);
  EXPECT_EQ(r.conn.minor, 19u);
  // Replies then use that minor's sizes.
  proto::ReplyBuf b;
  b.Start(1, 8 + 1);  // 7.9: current entry sizes
  b.Entry(proto::Attr{}, 1, 10);
  EXPECT_EQ(b.body_size(), sizeof(fuse_entry_out));
  b.Start(1, 38);
  b.AttrOut(proto::Attr{}, 10);
  EXPECT_EQ(b.body_size(), sizeof(fuse_attr_out));
}

TEST(ProtocolTest, InitRefusesTooOldAndDefersANewerMajor) {
  EXPECT_THAT(Init(7, 8, 0), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(Init(6, 30, 0), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK_AND_ASSIGN(proto::InitResult r, Init(8, 1, 0));
  EXPECT_FALSE(r.done) << "the kernel sends INIT again with our major";
  EXPECT_EQ(r.reply.size(), sizeof(fuse_out_header) + FUSE_COMPAT_INIT_OUT_SIZE);
}

TEST(ProtocolTest, ConnParamsRoundTripAndRejectGarbage) {
  proto::ConnParams c{7, 31, FUSE_ASYNC_READ | FUSE_MAX_PAGES, 131072, 131072, 256};
  ASSERT_OK_AND_ASSIGN(proto::ConnParams back, proto::ConnParams::Parse(c.Serialize()));
  EXPECT_EQ(back, c);
  for (const char* bad :
       {"", "7.31", "8.31 flags=0x0 ra=0 mw=0 mp=0", "7.3 flags=0x0 ra=0 mw=0 mp=0",
        "7.31 flags=zz ra=0 mw=0 mp=0", "7.31 flags=0x1 ra=x mw=0 mp=0"}) {
    EXPECT_THAT(proto::ConnParams::Parse(bad), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
  }
}

TEST(ProtocolTest, PureRules) {
  EXPECT_EQ(proto::ClampRead(100, 0, 4096), 100u);
  EXPECT_EQ(proto::ClampRead(100, 40, 50), 50u);
  EXPECT_EQ(proto::ClampRead(100, 90, 50), 10u);
  EXPECT_EQ(proto::ClampRead(100, 100, 50), 0u);
  EXPECT_EQ(proto::ClampRead(100, ~0ull, 50), 0u);
  EXPECT_EQ(proto::XattrRule(0, 5), proto::XattrAnswer::kLength);
  EXPECT_EQ(proto::XattrRule(4, 5), proto::XattrAnswer::kRange);
  EXPECT_EQ(proto::XattrRule(5, 5), proto::XattrAnswer::kValue);
  EXPECT_EQ(proto::XattrNameList({"a", "user.b"}), std::string("a\0user.b\0", 9));
  EXPECT_TRUE(proto::IsModifyingOp(FUSE_WRITE));
  EXPECT_TRUE(proto::IsModifyingOp(FUSE_SETXATTR));
  EXPECT_FALSE(proto::IsModifyingOp(FUSE_READ));
  EXPECT_TRUE(proto::IsNoReplyOp(FUSE_FORGET));
  EXPECT_FALSE(proto::IsNoReplyOp(FUSE_RELEASE));
}

TEST(ProtocolTest, DirentsAreAlignedAndBoundedByTheBuffer) {
  proto::ReplyBuf b;
  b.Start(3, 38);
  ASSERT_TRUE(b.AddDirent(false, "abc", 5, 0100644, 1, nullptr, 0, 4096));
  EXPECT_EQ(b.body_size(), FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + 3));
  fuse_dirent d;
  std::memcpy(&d, b.data() + sizeof(fuse_out_header), FUSE_NAME_OFFSET);
  EXPECT_EQ(d.ino, 5u);
  EXPECT_EQ(d.off, 1u);
  EXPECT_EQ(d.namelen, 3u);
  EXPECT_EQ(d.type, 8u);  // DT_REG
  const size_t one = b.body_size();
  EXPECT_FALSE(b.AddDirent(false, "abc", 6, 0100644, 2, nullptr, 0, one + 8));
  EXPECT_EQ(b.body_size(), one) << "an entry that does not fit adds nothing";
  EXPECT_EQ(OutHeader(b.data()).len, b.size());
  proto::Attr a;
  a.ino = 9;
  ASSERT_TRUE(b.AddDirent(true, "x", 9, 040755, 3, &a, 10, 4096));
  EXPECT_EQ(b.body_size(), one + FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET_DIRENTPLUS + 1));
}

// A tree: /a (5 bytes, xattr user.k=v), /dir/, /link -> a.
std::shared_ptr<const LayerTree> Tree() {
  std::vector<LayerEntry> e(3);
  e[0].path = "a";
  e[0].mode = 0644;
  e[0].size = 5;
  e[0].xattrs["user.k"] = "value";
  e[1].path = "dir";
  e[1].type = EntryType::kDirectory;
  e[1].mode = 0755;
  e[2].path = "link";
  e[2].type = EntryType::kSymlink;
  e[2].link_target = "a";
  return LayerTree::Build(e).value();
}

class BytesSource final : public FileSource {
 public:
  absl::StatusOr<size_t> ReadAt(const Node& n, uint64_t off, char* buf, size_t len) override {
    const std::string data = "hello";
    if (off >= n.size) return size_t{0};
    len = std::min<size_t>(len, n.size - off);
    std::memcpy(buf, data.data() + off, len);
    return len;
  }
};

class OpsTest : public ::testing::Test {
 protected:
  OpsTest() {
    layer_.tree = Tree();
    layer_.source = std::make_shared<BytesSource>();
    layer_.name = "test";
  }
  // Handles a request; returns the reply's errno (0 for success).
  int Run(uint32_t opcode, uint64_t nodeid, const std::string& arg) {
    std::vector<char> bytes = RequestBytes(opcode, nodeid, arg);
    out_.Start(7, 38);
    outcome_ = internal::Handle(layer_, Parse(bytes), &out_, 0);
    return -OutHeader(out_.data()).error;
  }
  std::string Body() const {
    return std::string(out_.data() + sizeof(fuse_out_header), out_.body_size());
  }
  uint64_t Ino(const std::string& name) { return layer_.tree->Lookup(1, name)->ino; }

  internal::ServedLayer layer_;
  proto::ReplyBuf out_;
  internal::Outcome outcome_;
};

TEST_F(OpsTest, LookupAnswersEntriesAndCachedNegativeEntries) {
  ASSERT_EQ(Run(FUSE_LOOKUP, 1, std::string("a\0", 2)), 0);
  fuse_entry_out e;
  std::memcpy(&e, Body().data(), sizeof(e));
  EXPECT_EQ(e.nodeid, Ino("a"));
  EXPECT_EQ(e.attr.size, 5u);
  EXPECT_EQ(e.attr.mode, 0100644u);
  EXPECT_GT(e.entry_valid, 3600u * 24 * 300);
  ASSERT_EQ(Run(FUSE_LOOKUP, 1, std::string("missing\0", 8)), 0);
  std::memcpy(&e, Body().data(), sizeof(e));
  EXPECT_EQ(e.nodeid, 0u) << "negative entry";
  EXPECT_GT(e.entry_valid, 0u);
  EXPECT_EQ(Run(FUSE_LOOKUP, Ino("a"), std::string("x\0", 2)), ENOTDIR);
  EXPECT_EQ(Run(FUSE_LOOKUP, 999, std::string("x\0", 2)), ENOENT);
}

TEST_F(OpsTest, ReadsAreClampedToTheFile) {
  fuse_read_in in{};
  in.offset = 1;
  in.size = 100;
  ASSERT_EQ(Run(FUSE_READ, Ino("a"), Arg(in)), 0);
  EXPECT_EQ(Body(), "ello");
  in.offset = 5;
  ASSERT_EQ(Run(FUSE_READ, Ino("a"), Arg(in)), 0);
  EXPECT_EQ(Body(), "");
  EXPECT_EQ(Run(FUSE_READ, Ino("dir"), Arg(in)), EISDIR);
}

TEST_F(OpsTest, ReaddirWalksDotEntriesThenChildrenByOffset) {
  fuse_read_in in{};
  in.size = 4096;
  ASSERT_EQ(Run(FUSE_READDIR, 1, Arg(in)), 0);
  std::vector<std::string> names;
  std::string body = Body();
  for (size_t p = 0; p < body.size();) {
    fuse_dirent d;
    std::memcpy(&d, body.data() + p, FUSE_NAME_OFFSET);
    names.push_back(body.substr(p + FUSE_NAME_OFFSET, d.namelen));
    p += FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + d.namelen);
  }
  EXPECT_THAT(names, ::testing::ElementsAre(".", "..", "a", "dir", "link"));
  in.offset = 3;  // after ".", "..", "a"
  ASSERT_EQ(Run(FUSE_READDIRPLUS, 1, Arg(in)), 0);
  fuse_direntplus dp;
  std::memcpy(&dp, Body().data(), sizeof(dp));
  EXPECT_EQ(dp.entry_out.nodeid, Ino("dir"));
  EXPECT_EQ(dp.dirent.off, 4u);
}

TEST_F(OpsTest, XattrsFollowTheSizeRule) {
  fuse_getxattr_in in{};
  ASSERT_EQ(Run(FUSE_GETXATTR, Ino("a"), Arg(in) + std::string("user.k\0", 7)), 0);
  fuse_getxattr_out o;
  std::memcpy(&o, Body().data(), sizeof(o));
  EXPECT_EQ(o.size, 5u);
  in.size = 2;
  EXPECT_EQ(Run(FUSE_GETXATTR, Ino("a"), Arg(in) + std::string("user.k\0", 7)), ERANGE);
  in.size = 64;
  ASSERT_EQ(Run(FUSE_GETXATTR, Ino("a"), Arg(in) + std::string("user.k\0", 7)), 0);
  EXPECT_EQ(Body(), "value");
  EXPECT_EQ(Run(FUSE_GETXATTR, Ino("a"), Arg(in) + std::string("user.no\0", 8)), ENODATA);
  ASSERT_EQ(Run(FUSE_LISTXATTR, Ino("a"), Arg(in)), 0);
  EXPECT_EQ(Body(), std::string("user.k\0", 7));
}

TEST_F(OpsTest, ModifyingOpsAreReadOnlyAndUnknownOnesUnimplemented) {
  EXPECT_EQ(Run(FUSE_WRITE, Ino("a"), std::string(64, '\0')), EROFS);
  EXPECT_EQ(Run(FUSE_MKDIR, 1, std::string(16, '\0')), EROFS);
  fuse_open_in open{};
  open.flags = O_RDWR;
  EXPECT_EQ(Run(FUSE_OPEN, Ino("a"), Arg(open)), EROFS);
  open.flags = O_RDONLY;
  ASSERT_EQ(Run(FUSE_OPEN, Ino("a"), Arg(open)), 0);
  fuse_open_out oo;
  std::memcpy(&oo, Body().data(), sizeof(oo));
  EXPECT_EQ(oo.fh, 0u) << "no handle: the same after a restart";
  EXPECT_TRUE(oo.open_flags & FOPEN_KEEP_CACHE);
  EXPECT_EQ(Run(FUSE_READLINK, Ino("link"), ""), 0);
  EXPECT_EQ(Body(), "a");
  EXPECT_EQ(Run(FUSE_BMAP, 1, std::string(16, '\0')), ENOSYS);
  Run(FUSE_FORGET, Ino("a"), std::string(8, '\0'));
  EXPECT_EQ(outcome_.kind, internal::Outcome::kNoReply);
}

}  // namespace
}  // namespace accel::fuse

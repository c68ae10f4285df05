// accelctl: the operator's tool for accel.

#include <cstdio>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "accelctl/commands.h"
#include "common/version.h"

namespace accel::ctl {
namespace {

struct Command {
  const char* name;
  int (*run)(const Args&);
  const char* summary;
};

constexpr Command kCommands[] = {
    {"status", RunStatus, "show the daemon's state as JSON"},
    {"inspect", RunInspect, "resolve an image reference and print its manifest as JSON"},
    {"copy", RunCopy, "copy an image between registries (all platforms or one)"},
    {"convert", RunConvert, "preload an image into the shared store and push its -acc target"},
    {"estargz", RunEstargz, "convert an image's layers to eStargz (lazy pulls) and push it"},
    {"store", RunStore, "list, inspect, remove, verify and gc what the store holds"},
    {"pull", RunPull,
     "pull an image into containerd, mounting remote layers instead of downloading"},
};

void PrintUsage(FILE* out) {
  std::fprintf(out,
               "Usage: accelctl COMMAND [flags]\n\n"
               "The operator's tool for accel, containerd's snapshotter for fast-starting\n"
               "images.\n\nCommands:\n");
  for (const Command& c : kCommands) std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
  std::fprintf(out,
               "\nRun 'accelctl COMMAND --help' for a command's flags.\n"
               "  --version   print the version and exit\n");
}

}  // namespace

int Fail(const std::string& msg, int code) {
  std::fprintf(stderr, "accelctl: %s\n", msg.c_str());
  return code;
}

}  // namespace accel::ctl

int main(int argc, char** argv) {
  using namespace accel::ctl;
  if (argc < 2) {
    PrintUsage(stderr);
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    PrintUsage(stdout);
    return 0;
  }
  if (cmd == "--version" || cmd == "version") {
    std::printf("accelctl %s\n", accel::Version());
    return 0;
  }
  Args args(argv + 2, argv + argc);
  for (const Command& c : kCommands) {
    if (cmd == c.name) return c.run(args);
  }
  return Fail(absl::StrCat("unknown command \"", cmd, "\" (see accelctl --help)"), 2);
}

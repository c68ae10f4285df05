#pragma once

// accelctl's commands. Each takes the arguments after its name and returns
// the process exit code (0 ok, 1 the operation failed, 2 bad usage). A new
// command adds a line to kCommands in main.cc and its own cmd_*.cc file.

#include <string>
#include <vector>

namespace accel::ctl {

using Args = std::vector<std::string>;

int RunStatus(const Args& args);
int RunInspect(const Args& args);
int RunCopy(const Args& args);
int RunConvert(const Args& args);
int RunStore(const Args& args);
int RunEstargz(const Args& args);
int RunPull(const Args& args);

// Prints "accelctl: MSG" on stderr and returns `code`.
int Fail(const std::string& msg, int code = 1);

}  // namespace accel::ctl

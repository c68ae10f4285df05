#pragma once

namespace accel {
// The project's version, from CMake's project(VERSION).
const char* Version();
}  // namespace accel

// Logging: thin wrappers over spdlog with one verbosity switch set by the CLI.
#pragma once
#include <spdlog/spdlog.h>

namespace unwedge {

enum class LogLevel { quiet, normal, verbose };

/// Sets the process-wide verbosity (quiet: warnings and errors only; verbose: debug lines).
void log_set_level(LogLevel level);

template <typename... Args>
void log_info(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  spdlog::info(fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void log_warn(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  spdlog::warn(fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void log_debug(spdlog::format_string_t<Args...> fmt, Args&&... args) {
  spdlog::debug(fmt, std::forward<Args>(args)...);
}

}  // namespace unwedge

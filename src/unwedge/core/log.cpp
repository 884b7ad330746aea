#include "unwedge/core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace unwedge {

void log_set_level(LogLevel level) {
  static bool configured = false;
  if (!configured) {
    auto logger = spdlog::stderr_color_mt("unwedge");
    logger->set_pattern("%^[%l]%$ %v");
    spdlog::set_default_logger(logger);
    configured = true;
  }
  switch (level) {
    case LogLevel::quiet: spdlog::set_level(spdlog::level::warn); break;
    case LogLevel::normal: spdlog::set_level(spdlog::level::info); break;
    case LogLevel::verbose: spdlog::set_level(spdlog::level::debug); break;
  }
}

}  // namespace unwedge
